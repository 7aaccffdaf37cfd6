#pragma once
// Topic names of PROTOCOL.md: parsing what arrives and building what leaves.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace otter::protocol {

enum class topic_kind {
  device_check,    // R/dev/D/up/check
  device_status,   // R/dev/D/up/status
  device_chunk,    // R/dev/D/up/chunk
  device_unknown,  // R/dev/D/up/<anything else>
  admin_request,   // R/admin/O/req
  admin_upload,    // R/admin/O/upload/U
};

struct parsed_topic {
  topic_kind kind;
  std::string subject;    // device id or operator name, as in the topic
  bool subject_valid;     // subject passes valid_name()
  std::string upload_id;  // admin_upload only
  bool upload_id_valid = false;
};

class topics {
 public:
  explicit topics(std::string root);  // e.g. "ota/v1"
  const std::string& root() const noexcept { return root_; }

  // nullopt: not a topic the service consumes (wrong root, wrong shape, service's own topics).
  std::optional<parsed_topic> parse(std::string_view topic) const;

  std::string offer(std::string_view device) const;  // R/dev/D/down/offer
  std::string error(std::string_view device) const;  // R/dev/D/down/error
  std::string chunk(std::string_view device, std::string_view file,
                    std::uint64_t offset) const;               // R/dev/D/down/chunk/F/O
  std::string admin_response(std::string_view op) const;       // R/admin/O/res
  std::string event(std::string_view kind) const;              // R/events/<kind>
  std::string service_state(std::string_view instance) const;  // R/service/<i>/state
  std::string metrics() const;                                 // R/service/metrics

  // Subscription filters of the service.
  std::string device_up_filter() const;     // R/dev/+/up/+
  std::string admin_req_filter() const;     // R/admin/+/req
  std::string admin_upload_filter() const;  // R/admin/+/upload/+

  // Device-side helpers (simulator, tests).
  std::string device_check(std::string_view device) const;
  std::string device_status(std::string_view device) const;
  std::string device_chunk_request(std::string_view device) const;
  std::string device_down_filter(std::string_view device) const;  // R/dev/D/down/#
  std::string admin_request(std::string_view op) const;
  std::string admin_upload(std::string_view op, std::string_view upload_id) const;

 private:
  std::string root_;
};

// The topic root itself: non-empty, no wildcards, no leading or trailing '/'.
bool valid_topic_root(std::string_view root) noexcept;

}  // namespace otter::protocol
