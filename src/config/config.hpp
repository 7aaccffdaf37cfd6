#pragma once
// Settings of otterd. Every setting is an environment variable and a --flag (the flag wins);
// all are validated up front so the service either starts with a sane configuration or says,
// naming the variable and the flag, what is wrong and what is expected.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/error.hpp"

namespace otter::config {

enum class role { viewer, admin };
std::string_view to_string(role r) noexcept;  // "viewer" | "admin"

// Member defaults are the documented defaults; load() fills instance and mqtt_client_id.
// An empty string means "not set" for the optional settings.
struct settings {
  std::string mqtt_url = "tcp://127.0.0.1:1883";
  std::string mqtt_user;
  std::string mqtt_password;   // secret: describe() masks it
  std::string mqtt_client_id;  // default "otterd-<instance>"
  std::string db_url;          // libpq URI or conninfo; log it only through redact_db_url()
  std::string signing_key;     // path to a PEM file, or the PEM text itself ("-----BEGIN...")
  std::string topic_root = "ota/v1";
  std::string data_dir = "./otter-data";
  std::string instance;  // default: sanitize_instance(host name)
  std::map<std::string, role> operators;
  std::chrono::seconds manifest_ttl{3600};
  std::chrono::seconds retry{600};  // retry_s told to devices that are up to date
  std::string log_level = "info";   // trace|debug|info|warn|error|critical|off
  std::string log_format = "text";  // text|json
  std::uint64_t max_upload = 16ull * 1024 * 1024;
  std::size_t queue_limit = 100000;
  std::string share_group;  // empty: plain subscriptions; else $share/<group>/...
  std::string http_addr;    // host:port
  std::string public_url;   // http(s)://..., trailing '/' removed
  std::string link_secret_file;
  std::string release_keys;
  bool require_signed = false;
  std::uint32_t chunk_max = 4096;
  std::uint32_t chunk_window = 16;
  std::chrono::seconds upload_gc{24 * 3600};
  // OTTER_EVENT_RETENTION: events older than this are deleted, except successful uploads and
  // commands that change something (the audit trail); 0 keeps every event.
  std::chrono::seconds event_retention{30 * 86400};
  // Event kinds published on R/events/<kind>; nullopt: every kind (PROTOCOL.md). All are
  // recorded in PostgreSQL whatever this says.
  std::optional<std::set<std::string>> published_events;

  bool publishes_event(const std::string& kind) const {
    return !published_events || published_events->contains(kind);
  }
};

// The kinds of event the service records, for OTTER_EVENTS.
const std::vector<std::string>& event_kinds();

struct option_doc {
  std::string env;           // OTTER_MQTT_URL
  std::string flag;          // --mqtt-url
  std::string metavar;       // URL (as in "--mqtt-url URL")
  std::string default_text;  // "tcp://127.0.0.1:1883", "(required)", "(unset)"...
  std::string help;
};

// The one table behind parsing, help_text(), describe() and the README, in display order.
const std::vector<option_doc>& options();

// Environment lookup is injected so that tests need not touch the real environment.
// A variable set to the empty string counts as unset.
using env_lookup = std::function<std::optional<std::string>(const std::string&)>;
env_lookup process_env();

// True when args ask for help (--help or -h in an option position). The caller checks this
// before load() and prints help_text(); load() itself refuses --help/-h with an error.
bool wants_help(const std::vector<std::string>& args);

// args exclude argv[0] and the subcommand. Flags: "--name value" or "--name=value"; a value
// that itself starts with "--" needs the '=' form. A boolean flag alone means true. A flag
// given twice, an unknown flag or a stray argument is an error. Errors are errc::bad_request
// and name the variable and the flag, e.g. "OTTER_RETRY_S (--retry-s): ...". With
// require_service_settings, OTTER_DB_URL and OTTER_SIGNING_KEY must be set (the service needs
// them; tools such as keygen do not).
result<settings> load(const std::vector<std::string>& args, const env_lookup& env,
                      bool require_service_settings = true);

// Non-fatal configuration problems worth a warning at startup (e.g. no operators configured).
std::vector<std::string> warnings(const settings& s);

// "Usage: <program> <usage_line>" followed by an aligned table: flag, env, default, help.
std::string help_text(std::string_view program, std::string_view usage_line);

// One "OTTER_NAME  value" line per setting, for the startup log. Secrets are masked: the MQTT
// password, the password in the database URL and an inline PEM key are never printed.
std::string describe(const settings& s);

// The database URL with any password replaced by "***" (URI user info, ?password=, or the
// conninfo password keyword). In a conninfo string that does not parse, everything from the
// word "password" on is masked.
std::string redact_db_url(std::string_view url);

// The default instance: characters outside [A-Za-z0-9_.-] become '-', at most 64 characters,
// "otterd" when nothing is left.
std::string sanitize_instance(std::string_view host);

// "host:port" or "[v6]:port" with a non-empty host and a port in 1..65535; the host is returned
// without brackets.
std::optional<std::pair<std::string, std::uint16_t>> parse_host_port(std::string_view s);

}  // namespace otter::config
