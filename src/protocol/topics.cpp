#include "protocol/topics.hpp"

#include <utility>
#include <vector>

#include "protocol/ids.hpp"

namespace otter::protocol {
namespace {

std::vector<std::string_view> split_levels(std::string_view s) {
  std::vector<std::string_view> levels;
  std::size_t start = 0;
  for (;;) {
    const auto slash = s.find('/', start);
    if (slash == std::string_view::npos) {
      levels.push_back(s.substr(start));
      return levels;
    }
    levels.push_back(s.substr(start, slash - start));
    start = slash + 1;
  }
}

std::string join(std::initializer_list<std::string_view> parts) {
  std::size_t size = 0;
  for (const auto p : parts) size += p.size() + 1;
  std::string out;
  out.reserve(size);
  bool first = true;
  for (const auto p : parts) {
    if (!first) out += '/';
    out += p;
    first = false;
  }
  return out;
}

}  // namespace

topics::topics(std::string root) : root_(std::move(root)) {}

std::optional<parsed_topic> topics::parse(std::string_view topic) const {
  if (topic.size() <= root_.size() + 1 || !topic.starts_with(root_) || topic[root_.size()] != '/')
    return std::nullopt;
  const auto levels = split_levels(topic.substr(root_.size() + 1));

  parsed_topic out{};
  if (levels.size() == 4 && levels[0] == "dev" && levels[2] == "up") {
    const auto what = levels[3];
    out.kind = what == "check"    ? topic_kind::device_check
               : what == "status" ? topic_kind::device_status
               : what == "chunk"  ? topic_kind::device_chunk
                                  : topic_kind::device_unknown;
  } else if (levels.size() == 3 && levels[0] == "admin" && levels[2] == "req") {
    out.kind = topic_kind::admin_request;
  } else if (levels.size() == 4 && levels[0] == "admin" && levels[2] == "upload") {
    out.kind = topic_kind::admin_upload;
    out.upload_id = std::string(levels[3]);
    out.upload_id_valid = valid_name(levels[3]);
  } else {
    return std::nullopt;
  }
  // An invalid subject is still reported, so that the caller can count and log the attempt.
  out.subject = std::string(levels[1]);
  out.subject_valid = valid_name(levels[1]);
  return out;
}

std::string topics::offer(std::string_view device) const {
  return join({root_, "dev", device, "down", "offer"});
}
std::string topics::error(std::string_view device) const {
  return join({root_, "dev", device, "down", "error"});
}
std::string topics::chunk(std::string_view device, std::string_view file,
                          std::uint64_t offset) const {
  return join({root_, "dev", device, "down", "chunk", file, std::to_string(offset)});
}
std::string topics::admin_response(std::string_view op) const {
  return join({root_, "admin", op, "res"});
}
std::string topics::event(std::string_view kind) const {
  return join({root_, "events", kind});
}
std::string topics::service_state(std::string_view instance) const {
  return join({root_, "service", instance, "state"});
}
std::string topics::metrics() const {
  return join({root_, "service", "metrics"});
}

std::string topics::device_up_filter() const {
  return join({root_, "dev", "+", "up", "+"});
}
std::string topics::admin_req_filter() const {
  return join({root_, "admin", "+", "req"});
}
std::string topics::admin_upload_filter() const {
  return join({root_, "admin", "+", "upload", "+"});
}

std::string topics::device_check(std::string_view device) const {
  return join({root_, "dev", device, "up", "check"});
}
std::string topics::device_status(std::string_view device) const {
  return join({root_, "dev", device, "up", "status"});
}
std::string topics::device_chunk_request(std::string_view device) const {
  return join({root_, "dev", device, "up", "chunk"});
}
std::string topics::device_down_filter(std::string_view device) const {
  return join({root_, "dev", device, "down", "#"});
}
std::string topics::admin_request(std::string_view op) const {
  return join({root_, "admin", op, "req"});
}
std::string topics::admin_upload(std::string_view op, std::string_view upload_id) const {
  return join({root_, "admin", op, "upload", upload_id});
}

bool valid_topic_root(std::string_view root) noexcept {
  if (root.empty() || root.front() == '/' || root.back() == '/') return false;
  // Empty levels ("a//b") are legal MQTT but almost surely a typo in the configuration.
  if (root.find("//") != std::string_view::npos) return false;
  for (const char c : root)
    if (c == '+' || c == '#' || c == '\0') return false;
  return valid_utf8(root);
}

}  // namespace otter::protocol
