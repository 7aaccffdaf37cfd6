#include "protocol/messages.hpp"

#include <array>
#include <limits>
#include <utility>

#include "protocol/fields.hpp"
#include "protocol/ids.hpp"

namespace otter::protocol {
namespace {

using json = nlohmann::json;

// Sanity bounds only: the configured chunk.max / chunk.window are checked by the caller.
constexpr std::uint64_t kMaxChunkLen = 1024 * 1024;
constexpr std::uint64_t kMaxChunkCount = 1024;

constexpr std::array<std::pair<status_state, std::string_view>, 7> kStates{{
    {status_state::downloading, "downloading"},
    {status_state::verifying, "verifying"},
    {status_state::installing, "installing"},
    {status_state::success, "success"},
    {status_state::failed, "failed"},
    {status_state::rejected, "rejected"},
    {status_state::rolled_back, "rolled_back"},
}};

// nlohmann's what() starts with "[json.exception.parse_error.101] ", noise to a device author.
// nlohmann's message quotes the bytes it last read, which can end inside a multi-byte
// character of a valid payload: escaped, so that the answer quoting it is valid JSON.
std::string without_exception_tag(std::string_view what) {
  if (what.starts_with("[json.exception.")) {
    const auto end = what.find("] ");
    if (end != std::string_view::npos) what.remove_prefix(end + 2);
  }
  return escape_invalid_utf8(what);
}

result<status_state> read_state(const json& v, std::string_view name) {
  if (v.is_string())
    if (auto s = status_state_from_string(v.get_ref<const std::string&>())) return *s;
  return detail::field_error(
      name,
      "must be one of downloading, verifying, installing, success, failed, rejected, rolled_back");
}

// A rollout id as echoed from a manifest: digits kept as text, an integer accepted too.
result<std::string> read_status_rollout(const json& v, std::string_view name) {
  if (v.is_string() && detail::all_digits(v.get_ref<const std::string&>(), 1, 20))
    return v.get<std::string>();
  if (v.is_number_unsigned()) {
    if (const auto u = v.get<std::uint64_t>(); u >= 1) return std::to_string(u);
  } else if (v.is_number_integer()) {
    if (const auto i = v.get<std::int64_t>(); i >= 1) return std::to_string(i);
  }
  return detail::field_error(
      name, "must be a rollout id: a string of 1 to 20 digits or a positive integer");
}

std::string nul_replaced(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\0')
      out += "\xEF\xBF\xBD";  // U+FFFD
    else
      out += c;
  }
  return out;
}

}  // namespace

json without_nul(const json& j) {
  if (j.is_string()) {
    const auto& s = j.get_ref<const std::string&>();
    return s.find('\0') == std::string::npos ? j : json(nul_replaced(s));
  }
  if (j.is_array()) {
    json out = json::array();
    for (const auto& v : j) out.push_back(without_nul(v));
    return out;
  }
  if (j.is_object()) {
    json out = json::object();
    for (const auto& [k, v] : j.items()) out[nul_replaced(k)] = without_nul(v);
    return out;
  }
  return j;
}

result<json> parse_object(std::string_view payload, std::size_t max_bytes) {
  if (payload.size() > max_bytes)
    return make_error(errc::bad_request, "payload is " + std::to_string(payload.size()) +
                                             " bytes; the limit is " + std::to_string(max_bytes));
  if (!valid_utf8(payload))
    return make_error(errc::bad_request, "malformed JSON: payload is not valid UTF-8");
  // JSON text has no raw NUL, and nlohmann would stop reading at one: "{...}\0junk" passes.
  if (payload.find('\0') != std::string_view::npos)
    return make_error(errc::bad_request, "malformed JSON: payload contains a NUL byte");
  json j;
  try {
    j = json::parse(payload.begin(), payload.end());
  } catch (const json::exception& e) {  // parse_error, and out_of_range for e.g. 1e400
    return make_error(errc::bad_request, "malformed JSON: " + without_exception_tag(e.what()));
  }
  if (!j.is_object()) return make_error(errc::bad_request, "payload must be a JSON object");
  return j;
}

std::string to_wire(const json& message) {
  return message.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::optional<std::string> peek_string(const json& obj, const char* key) {
  if (!obj.is_object()) return std::nullopt;
  const auto it = obj.find(key);
  if (it == obj.end()) return std::nullopt;
  auto s = detail::read_string(*it, key, 1, 64);
  if (!s) return std::nullopt;
  return std::move(s).value();
}

namespace {

// SAX events up to the first top-level `key`: its value is kept when it is a string, and the
// parse stops there, so an oversized or broken payload costs no more than reaching it.
class key_peeker final : public json::json_sax_t {
 public:
  explicit key_peeker(std::string_view key) : key_(key) {}
  std::optional<std::string> found;

  bool null() override { return value(); }
  bool boolean(bool) override { return value(); }
  bool number_integer(number_integer_t) override { return value(); }
  bool number_unsigned(number_unsigned_t) override { return value(); }
  bool number_float(number_float_t, const string_t&) override { return value(); }
  bool string(string_t& s) override {
    if (wanted_) {
      found = s;
      return false;
    }
    return value();
  }
  bool binary(binary_t&) override { return value(); }
  bool start_object(std::size_t) override { return open(); }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(); }
  bool end_array() override { return close(); }
  bool key(string_t& k) override {
    wanted_ = depth_ == 1 && k == key_;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  bool value() { return !wanted_; }  // the key's value is not a string: stop, nothing found
  bool open() {
    if (wanted_) return false;
    ++depth_;
    return true;
  }
  bool close() {
    --depth_;
    return true;
  }
  std::string_view key_;
  int depth_ = 0;
  bool wanted_ = false;
};

}  // namespace

std::optional<std::string> peek_string_unparsed(std::string_view payload, const char* key) {
  constexpr std::size_t kScan = 64 * 1024;
  const std::string_view head = payload.substr(0, kScan);
  key_peeker sax(key);
  // The head of an oversized payload ends mid-document: a parse error after the key is fine.
  (void)json::sax_parse(head.begin(), head.end(), &sax, json::input_format_t::json, false);
  if (!sax.found) return std::nullopt;
  return peek_string(json{{key, *sax.found}}, key);  // the same rules as for parsed payloads
}

result<check_msg> parse_check(const json& obj) {
  if (!obj.is_object()) return make_error(errc::bad_request, "payload must be a JSON object");
  detail::field_reader r(obj);
  check_msg m;
  m.req = r.required("req", detail::string_reader(1, 64));
  m.model = r.required("model", detail::read_name);
  auto version = r.required("version", detail::read_version);
  m.nonce = r.required("nonce", detail::hex_reader(16, 64));
  m.attrs = r.optional("attrs", detail::attrs_reader(0, 16));
  if (!r.ok()) return r.take_error();
  m.version_text = std::move(version.text);
  m.version = std::move(version.value);
  return m;
}

std::string_view to_string(status_state s) noexcept {
  for (const auto& [state, name] : kStates)
    if (state == s) return name;
  return "failed";
}

std::optional<status_state> status_state_from_string(std::string_view s) noexcept {
  for (const auto& [state, name] : kStates)
    if (name == s) return state;
  return std::nullopt;
}

result<status_msg> parse_status(const json& obj) {
  if (!obj.is_object()) return make_error(errc::bad_request, "payload must be a JSON object");
  detail::field_reader r(obj);
  status_msg m;
  m.req = r.optional("req", detail::string_reader(1, 64));
  auto version = r.required("version", detail::read_version);
  m.state = r.required("state", read_state);
  if (auto p = r.optional("progress", detail::uint_reader(0, 100)))
    m.progress = static_cast<int>(*p);
  m.error = r.optional("error", detail::string_reader(0, kMaxStatusError));
  m.rollout = r.optional("rollout", read_status_rollout);
  if (!r.ok()) return r.take_error();
  const bool needs_error = m.state == status_state::failed || m.state == status_state::rejected ||
                           m.state == status_state::rolled_back;
  if (needs_error && !m.error)
    return detail::field_error("error",
                               "is required when \"state\" is " + std::string(to_string(m.state)));
  m.version_text = std::move(version.text);
  m.version = std::move(version.value);
  return m;
}

result<chunk_request_msg> parse_chunk_request(const json& obj) {
  if (!obj.is_object()) return make_error(errc::bad_request, "payload must be a JSON object");
  detail::field_reader r(obj);
  chunk_request_msg m;
  m.req = r.optional("req", detail::string_reader(1, 64));
  m.file = r.required("file", detail::hex_reader(16, 16));
  m.offset =
      r.required("offset", detail::uint_reader(0, std::numeric_limits<std::uint64_t>::max()));
  m.len = static_cast<std::uint32_t>(r.required("len", detail::uint_reader(1, kMaxChunkLen)));
  m.count = static_cast<std::uint32_t>(
      r.optional("count", detail::uint_reader(1, kMaxChunkCount)).value_or(1));
  if (!r.ok()) return r.take_error();
  return m;
}

}  // namespace otter::protocol
