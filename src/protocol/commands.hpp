#pragma once
// Operator requests of PROTOCOL.md: the envelope and every command's arguments.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "protocol/error.hpp"
#include "protocol/messages.hpp"
#include "protocol/semver.hpp"
#include "protocol/target.hpp"

namespace otter::protocol {

struct admin_request {
  std::string id;       // 1..64 characters
  std::string cmd;      // non-empty string; unknown commands are the dispatcher's concern
  nlohmann::json args;  // object; {} when absent
};
// bad_request when id/cmd is missing or not a string, or args is present but not an object.
result<admin_request> parse_admin_request(const nlohmann::json& obj);

// Every command is a known name; is_read_only() says whether a viewer may run it.
bool is_known_command(std::string_view cmd) noexcept;
bool is_read_only_command(std::string_view cmd) noexcept;
// The commands that change something (known and not read-only), in table order.
std::vector<std::string> changing_commands();

inline constexpr int kDefaultPageLimit = 100;
inline constexpr int kMaxPageLimit = 1000;

struct page_args {
  int limit = kDefaultPageLimit;      // 1..1000: larger values clamped to 1000, < 1 refused
  std::optional<std::int64_t> after;  // cursor: a string of decimal digits (an id)
};

struct version_arg {
  std::string text;  // as given
  semver value;
};

struct release_add_args {
  std::string model;
  version_arg version;
  std::string sha256;  // lowercase hex, 64
  std::optional<version_arg> min_version;
  std::optional<std::string> notes;      // <= 4096 characters
  std::optional<std::string> image_sig;  // base64url, <= 128 characters
};
struct release_get_args {
  std::string model;
  version_arg version;
};
struct release_list_args {
  std::optional<std::string> model;
  page_args page;
};
struct rollout_create_args {
  std::string name;  // 1..128 characters
  std::string model;
  version_arg version;
  target tgt;
  bool allow_downgrade = false;
};
// Rollout ids are strings of digits on the wire; a JSON integer is accepted too.
struct rollout_ref_args {
  std::int64_t id = 0;
  std::optional<std::string> reason;  // <= 256 characters
};
struct rollout_update_args {
  std::int64_t id = 0;
  std::optional<std::uint32_t> basis_points;  // from "percent"
};
enum class rollout_state { active, paused, cancelled };
std::string_view to_string(rollout_state s) noexcept;
std::optional<rollout_state> rollout_state_from_string(std::string_view s) noexcept;

struct rollout_list_args {
  std::optional<rollout_state> state;
  std::optional<std::string> model;
  page_args page;
};
struct device_list_args {
  std::optional<std::string> model;
  std::optional<std::string> version;  // identity (build metadata dropped): semver::canonical()
  page_args page;
};
struct device_get_args {
  std::string id;
};
struct status_list_args {
  std::optional<std::string> device;
  std::optional<std::int64_t> rollout;
  std::optional<status_state> state;
  page_args page;
};
struct events_list_args {
  std::optional<std::string> device;
  std::optional<std::string> kind;    // 1..32 of [a-z_]
  std::optional<std::int64_t> since;  // unix seconds, >= 0
  page_args page;
};

result<release_add_args> parse_release_add(const nlohmann::json& args);
result<release_get_args> parse_release_get(const nlohmann::json& args);
result<release_list_args> parse_release_list(const nlohmann::json& args);
result<rollout_create_args> parse_rollout_create(const nlohmann::json& args);
result<rollout_ref_args> parse_rollout_ref(const nlohmann::json& args);  // get/pause/resume/cancel
result<rollout_update_args> parse_rollout_update(const nlohmann::json& args);
result<rollout_list_args> parse_rollout_list(const nlohmann::json& args);
result<device_list_args> parse_device_list(const nlohmann::json& args);
result<device_get_args> parse_device_get(const nlohmann::json& args);
result<status_list_args> parse_status_list(const nlohmann::json& args);
result<events_list_args> parse_events_list(const nlohmann::json& args);

}  // namespace otter::protocol
