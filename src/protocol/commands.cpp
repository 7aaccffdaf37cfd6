#include "protocol/commands.hpp"

#include <array>
#include <charconv>
#include <limits>
#include <utility>

#include "protocol/fields.hpp"

namespace otter::protocol {
namespace {

using json = nlohmann::json;

constexpr std::uint64_t kInt64Max =
    static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());

struct command_info {
  std::string_view name;
  bool read_only;
};

constexpr std::array<command_info, 15> kCommands{{
    {"release.add", false},
    {"release.get", true},
    {"release.list", true},
    {"rollout.create", false},
    {"rollout.get", true},
    {"rollout.list", true},
    {"rollout.update", false},
    {"rollout.pause", false},
    {"rollout.resume", false},
    {"rollout.cancel", false},
    {"device.list", true},
    {"device.get", true},
    {"status.list", true},
    {"events.list", true},
    {"metrics.get", true},
}};

constexpr std::array<std::pair<rollout_state, std::string_view>, 3> kRolloutStates{{
    {rollout_state::active, "active"},
    {rollout_state::paused, "paused"},
    {rollout_state::cancelled, "cancelled"},
}};

const command_info* find_command(std::string_view cmd) noexcept {
  for (const auto& c : kCommands)
    if (c.name == cmd) return &c;
  return nullptr;
}

// Digits within int64 and at least min (ids and cursors are database keys).
std::optional<std::int64_t> parse_id_digits(std::string_view s, std::int64_t min) noexcept {
  if (!detail::all_digits(s, 1, 19)) return std::nullopt;
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size() || v < min) return std::nullopt;
  return v;
}

// Rollout ids travel as strings of digits; a positive JSON integer is accepted too.
result<std::int64_t> read_rollout_id(const json& v, std::string_view name) {
  std::optional<std::int64_t> id;
  if (v.is_string()) {
    id = parse_id_digits(v.get_ref<const std::string&>(), 1);
  } else if (v.is_number_unsigned()) {
    if (const auto u = v.get<std::uint64_t>(); u >= 1 && u <= kInt64Max)
      id = static_cast<std::int64_t>(u);
  } else if (v.is_number_integer()) {
    if (const auto i = v.get<std::int64_t>(); i >= 1) id = i;
  }
  if (!id)
    return detail::field_error(
        name, "must be a rollout id: a string of 1 to 19 digits or a positive integer");
  return *id;
}

result<int> read_limit(const json& v, std::string_view name) {
  const auto refuse = [&] {
    return detail::field_error(name, "must be an integer >= 1 (values above " +
                                         std::to_string(kMaxPageLimit) + " are clamped)");
  };
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u < 1) return refuse();
    return static_cast<int>(std::min<std::uint64_t>(u, kMaxPageLimit));
  }
  if (v.is_number_integer()) {
    const auto i = v.get<std::int64_t>();
    if (i < 1) return refuse();
    return static_cast<int>(std::min<std::int64_t>(i, kMaxPageLimit));
  }
  return refuse();
}

result<std::int64_t> read_cursor(const json& v, std::string_view name) {
  std::optional<std::int64_t> c;
  if (v.is_string()) c = parse_id_digits(v.get_ref<const std::string&>(), 0);
  if (!c)
    return detail::field_error(name, "must be a cursor from \"next\": a string of 1 to 19 digits");
  return *c;
}

result<rollout_state> read_rollout_state(const json& v, std::string_view name) {
  if (v.is_string())
    if (auto s = rollout_state_from_string(v.get_ref<const std::string&>())) return *s;
  return detail::field_error(name, "must be one of active, paused, cancelled");
}

result<status_state> read_status_state(const json& v, std::string_view name) {
  if (v.is_string())
    if (auto s = status_state_from_string(v.get_ref<const std::string&>())) return *s;
  return detail::field_error(
      name,
      "must be one of downloading, verifying, installing, success, failed, rejected, rolled_back");
}

result<std::string> read_image_sig(const json& v, std::string_view name) {
  const auto refuse = [&] {
    return detail::field_error(name, "must be 1 to 128 base64url characters [A-Za-z0-9_-]");
  };
  if (!v.is_string()) return refuse();
  const auto& s = v.get_ref<const std::string&>();
  if (s.empty() || s.size() > 128) return refuse();
  for (const char c : s) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) return refuse();
  }
  return s;
}

result<std::string> read_event_kind(const json& v, std::string_view name) {
  const auto refuse = [&] {
    return detail::field_error(name, "must be 1 to 32 characters of [a-z_]");
  };
  if (!v.is_string()) return refuse();
  const auto& s = v.get_ref<const std::string&>();
  if (s.empty() || s.size() > 32) return refuse();
  for (const char c : s)
    if (!((c >= 'a' && c <= 'z') || c == '_')) return refuse();
  return s;
}

page_args read_page(detail::field_reader& r) {
  page_args p;
  p.limit = r.optional("limit", read_limit).value_or(kDefaultPageLimit);
  p.after = r.optional("after", read_cursor);
  return p;
}

// Every parse_* takes the "args" object of a request.
std::optional<error> check_args(const json& args) {
  if (!args.is_object()) return detail::not_an_object("args");
  return std::nullopt;
}

}  // namespace

result<admin_request> parse_admin_request(const json& obj) {
  if (!obj.is_object()) return make_error(errc::bad_request, "payload must be a JSON object");
  detail::field_reader r(obj);
  admin_request req;
  req.id = r.required("id", detail::string_reader(1, 64));
  req.cmd = r.required("cmd", detail::string_reader(1, 64));
  auto args = r.optional("args", [](const json& v, std::string_view name) -> result<json> {
    if (!v.is_object()) return detail::not_an_object(name);
    return v;
  });
  if (!r.ok()) return r.take_error();
  req.args = args ? std::move(*args) : json::object();
  return req;
}

bool is_known_command(std::string_view cmd) noexcept {
  return find_command(cmd) != nullptr;
}

bool is_read_only_command(std::string_view cmd) noexcept {
  const auto* c = find_command(cmd);
  return c != nullptr && c->read_only;
}

std::vector<std::string> changing_commands() {
  std::vector<std::string> out;
  for (const auto& c : kCommands)
    if (!c.read_only) out.emplace_back(c.name);
  return out;
}

std::string_view to_string(rollout_state s) noexcept {
  for (const auto& [state, name] : kRolloutStates)
    if (state == s) return name;
  return "cancelled";
}

std::optional<rollout_state> rollout_state_from_string(std::string_view s) noexcept {
  for (const auto& [state, name] : kRolloutStates)
    if (name == s) return state;
  return std::nullopt;
}

result<release_add_args> parse_release_add(const json& args) {
  if (auto e = check_args(args)) return std::move(*e);
  detail::field_reader r(args);
  release_add_args a;
  a.model = r.required("model", detail::read_name);
  a.version = r.required("version", detail::read_version);
  a.sha256 = r.required("sha256", detail::read_sha256);
  a.min_version = r.optional("min_version", detail::read_version);
  a.notes = r.optional("notes", detail::string_reader(0, 4096));
  a.image_sig = r.optional("image_sig", read_image_sig);
  if (!r.ok()) return r.take_error();
  return a;
}

result<release_get_args> parse_release_get(const json& args) {
  if (auto e = check_args(args)) return std::move(*e);
  detail::field_reader r(args);
  release_get_args a;
  a.model = r.required("model", detail::read_name);
  a.version = r.required("version", detail::read_version);
  if (!r.ok()) return r.take_error();
  return a;
}

result<release_list_args> parse_release_list(const json& args) {
  if (auto e = check_args(args)) return std::move(*e);
  detail::field_reader r(args);
  release_list_args a;
  a.model = r.optional("model", detail::read_name);
  a.page = read_page(r);
  if (!r.ok()) return r.take_error();
  return a;
}

result<rollout_create_args> parse_rollout_create(const json& args) {
  if (auto e = check_args(args)) return std::move(*e);
  detail::field_reader r(args);
  rollout_create_args a;
  a.name = r.required("name", detail::string_reader(1, 128));
  a.model = r.required("model", detail::read_name);
  a.version = r.required("version", detail::read_version);
  a.tgt = r.required("target", [](const json& v, std::string_view) { return parse_target(v); });
  a.allow_downgrade = r.optional("allow_downgrade", detail::read_bool).value_or(false);
  if (!r.ok()) return r.take_error();
  return a;
}

result<rollout_ref_args> parse_rollout_ref(const json& args) {
  if (auto e = check_args(args)) return std::move(*e);
  detail::field_reader r(args);
  rollout_ref_args a;
  a.id = r.required("id", read_rollout_id);
  a.reason = r.optional("reason", detail::string_reader(0, 256));
  if (!r.ok()) return r.take_error();
  return a;
}

result<rollout_update_args> parse_rollout_update(const json& args) {
  if (auto e = check_args(args)) return std::move(*e);
  detail::field_reader r(args);
  rollout_update_args a;
  a.id = r.required("id", read_rollout_id);
  a.basis_points = r.optional("percent", detail::read_percent);
  if (!r.ok()) return r.take_error();
  return a;
}

result<rollout_list_args> parse_rollout_list(const json& args) {
  if (auto e = check_args(args)) return std::move(*e);
  detail::field_reader r(args);
  rollout_list_args a;
  a.state = r.optional("state", read_rollout_state);
  a.model = r.optional("model", detail::read_name);
  a.page = read_page(r);
  if (!r.ok()) return r.take_error();
  return a;
}

result<device_list_args> parse_device_list(const json& args) {
  if (auto e = check_args(args)) return std::move(*e);
  detail::field_reader r(args);
  device_list_args a;
  a.model = r.optional("model", detail::read_name);
  // Build metadata is ignored in identity (PROTOCOL.md): "1.0.0" also finds "1.0.0+b7".
  if (auto v = r.optional("version", detail::read_version)) a.version = v->value.canonical();
  a.page = read_page(r);
  if (!r.ok()) return r.take_error();
  return a;
}

result<device_get_args> parse_device_get(const json& args) {
  if (auto e = check_args(args)) return std::move(*e);
  detail::field_reader r(args);
  device_get_args a;
  a.id = r.required("id", detail::read_name);
  if (!r.ok()) return r.take_error();
  return a;
}

result<status_list_args> parse_status_list(const json& args) {
  if (auto e = check_args(args)) return std::move(*e);
  detail::field_reader r(args);
  status_list_args a;
  a.device = r.optional("device", detail::read_name);
  a.rollout = r.optional("rollout", read_rollout_id);
  a.state = r.optional("state", read_status_state);
  a.page = read_page(r);
  if (!r.ok()) return r.take_error();
  return a;
}

result<events_list_args> parse_events_list(const json& args) {
  if (auto e = check_args(args)) return std::move(*e);
  detail::field_reader r(args);
  events_list_args a;
  a.device = r.optional("device", detail::read_name);
  a.kind = r.optional("kind", read_event_kind);
  // 9999-12-31T23:59:59Z: PostgreSQL's timestamps end there (later was "internal").
  constexpr std::uint64_t kLastSecond = 253402300799;
  if (auto since = r.optional("since", detail::uint_reader(0, kLastSecond)))
    a.since = static_cast<std::int64_t>(*since);
  a.page = read_page(r);
  if (!r.ok()) return r.take_error();
  return a;
}

}  // namespace otter::protocol
