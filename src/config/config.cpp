#include "config/config.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <limits>
#include <set>

#include "protocol/ids.hpp"
#include "protocol/topics.hpp"

namespace otter::config {
namespace {

// A parser stores a valid value into settings and returns nothing, or returns what is wrong
// and what is expected; load() prefixes that with "OTTER_X (--x): ".
using parser = std::optional<std::string> (*)(settings&, const std::string&);
using shower = std::string (*)(const settings&);

struct option_spec {
  const char* env;
  const char* flag;  // without the leading "--"
  const char* metavar;
  const char* default_text;
  const char* help;
  bool boolean;  // the flag alone means true
  bool secret;   // the raw value is never echoed in an error
  parser parse;
  shower show;
};

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * kKiB;
constexpr std::uint64_t kGiB = 1024 * kMiB;
constexpr const char* kUnset = "(unset)";

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Quoted for messages, with control characters visible (a stray newline from a file is a
// common cause of "invalid" values).
std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// Digits only (no sign, no spaces); too large saturates so that the range check rejects it.
std::optional<std::uint64_t> parse_uint(std::string_view s) {
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  std::uint64_t v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec == std::errc::result_out_of_range) return std::numeric_limits<std::uint64_t>::max();
  if (ec != std::errc{} || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

std::uint64_t saturating_mul(std::uint64_t a, std::uint64_t b) {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a)
    return std::numeric_limits<std::uint64_t>::max();
  return a * b;
}

// Leading digits, then the rest as a suffix.
std::pair<std::string_view, std::string_view> split_number(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  return {s.substr(0, i), s.substr(i)};
}

std::string human_seconds(std::uint64_t s) {
  if (s != 0 && s % 86400 == 0) return std::to_string(s / 86400) + "d";
  if (s != 0 && s % 3600 == 0) return std::to_string(s / 3600) + "h";
  if (s != 0 && s % 60 == 0) return std::to_string(s / 60) + "m";
  return std::to_string(s) + "s";
}

std::string human_bytes(std::uint64_t b) {
  if (b != 0 && b % kGiB == 0) return std::to_string(b / kGiB) + " GiB";
  if (b != 0 && b % kMiB == 0) return std::to_string(b / kMiB) + " MiB";
  if (b != 0 && b % kKiB == 0) return std::to_string(b / kKiB) + " KiB";
  return std::to_string(b) + " B";
}

std::optional<std::string> parse_duration(const std::string& v, std::uint64_t lo, std::uint64_t hi,
                                          std::chrono::seconds& out) {
  const auto [digits, suffix] = split_number(v);
  const auto n = parse_uint(digits);
  std::uint64_t unit = 0;
  const std::string sfx = lower(suffix);
  if (sfx.empty() || sfx == "s")
    unit = 1;
  else if (sfx == "m")
    unit = 60;
  else if (sfx == "h")
    unit = 3600;
  else if (sfx == "d")
    unit = 86400;
  if (!n || unit == 0)
    return quote(v) + " is not a duration; expected seconds (" + std::to_string(lo) + ".." +
           std::to_string(hi) + ") or a number with s/m/h/d";
  const std::uint64_t secs = saturating_mul(*n, unit);
  if (secs < lo || secs > hi)
    return quote(v) + " is out of range; expected " + std::to_string(lo) + ".." +
           std::to_string(hi) + " seconds (" + human_seconds(lo) + ".." + human_seconds(hi) + ")";
  out = std::chrono::seconds(static_cast<std::chrono::seconds::rep>(secs));
  return std::nullopt;
}

template <class T>
std::optional<std::string> parse_int(const std::string& v, std::uint64_t lo, std::uint64_t hi,
                                     T& out) {
  const auto n = parse_uint(v);
  if (!n)
    return quote(v) + " is not an integer; expected " + std::to_string(lo) + ".." +
           std::to_string(hi);
  if (*n < lo || *n > hi)
    return quote(v) + " is out of range; expected " + std::to_string(lo) + ".." +
           std::to_string(hi);
  out = static_cast<T>(*n);
  return std::nullopt;
}

std::optional<std::string> parse_size(const std::string& v, std::uint64_t lo, std::uint64_t hi,
                                      std::uint64_t& out) {
  const auto [digits, suffix] = split_number(v);
  const auto n = parse_uint(digits);
  std::uint64_t unit = 0;
  const std::string sfx = lower(suffix);
  if (sfx.empty())
    unit = 1;
  else if (sfx == "k" || sfx == "kib")
    unit = kKiB;
  else if (sfx == "m" || sfx == "mib")
    unit = kMiB;
  else if (sfx == "g" || sfx == "gib")
    unit = kGiB;
  if (!n || unit == 0)
    return quote(v) + " is not a size; expected bytes (" + std::to_string(lo) + ".." +
           std::to_string(hi) + ") or a number with K, M, G (KiB, MiB, GiB)";
  const std::uint64_t bytes = saturating_mul(*n, unit);
  if (bytes < lo || bytes > hi)
    return quote(v) + " is out of range; expected " + std::to_string(lo) + ".." +
           std::to_string(hi) + " bytes (" + human_bytes(lo) + ".." + human_bytes(hi) + ")";
  out = bytes;
  return std::nullopt;
}

std::optional<std::string> parse_choice(const std::string& v, const char* what,
                                        std::initializer_list<const char*> choices,
                                        std::string& out) {
  const std::string l = lower(v);
  std::string list;
  for (const char* c : choices) {
    if (l == c) {
      out = l;
      return std::nullopt;
    }
    list += list.empty() ? "" : ", ";
    list += c;
  }
  return quote(v) + " is not a " + what + "; expected one of " + list;
}

bool host_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
}

std::optional<std::string> parse_mqtt_url(settings& s, const std::string& v) {
  const std::string expected =
      " is not an MQTT broker URL; expected tcp://host:port or ssl://host:port (port 1..65535)";
  std::string_view rest(v);
  if (rest.starts_with("tcp://"))
    rest.remove_prefix(6);
  else if (rest.starts_with("ssl://"))
    rest.remove_prefix(6);
  else
    return quote(v) + expected;
  if (rest.find('@') != std::string_view::npos)
    return quote(v) + expected + "; give credentials in OTTER_MQTT_USER and OTTER_MQTT_PASSWORD";
  if (!parse_host_port(rest)) return quote(v) + expected;
  s.mqtt_url = v;
  return std::nullopt;
}

// libpq's conninfo grammar: keyword = value pairs separated by white space; a value is either
// single-quoted (with \' and \\) or runs to the next white space (with \ escapes).
struct conninfo_pair {
  std::string keyword;
  std::size_t value_begin, value_end;  // span of the raw value text, quotes included
};

std::optional<std::vector<conninfo_pair>> parse_conninfo(std::string_view s) {
  std::vector<conninfo_pair> pairs;
  auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  std::size_t i = 0;
  while (true) {
    while (i < s.size() && space(s[i])) ++i;
    if (i == s.size()) break;
    const std::size_t kb = i;
    while (i < s.size() && !space(s[i]) && s[i] != '=') ++i;
    std::string keyword(s.substr(kb, i - kb));
    if (keyword.empty() || !std::all_of(keyword.begin(), keyword.end(), [](char c) {
          return std::islower(static_cast<unsigned char>(c)) || c == '_';
        }))
      return std::nullopt;
    while (i < s.size() && space(s[i])) ++i;
    if (i == s.size() || s[i] != '=') return std::nullopt;
    ++i;
    while (i < s.size() && space(s[i])) ++i;
    const std::size_t vb = i;
    if (i < s.size() && s[i] == '\'') {
      ++i;
      bool closed = false;
      while (i < s.size()) {
        if (s[i] == '\\' && i + 1 < s.size()) {
          i += 2;
        } else if (s[i] == '\'') {
          ++i;
          closed = true;
          break;
        } else {
          ++i;
        }
      }
      if (!closed) return std::nullopt;
    } else {
      while (i < s.size() && !space(s[i])) i += (s[i] == '\\' && i + 1 < s.size()) ? 2 : 1;
    }
    pairs.push_back({std::move(keyword), vb, i});
  }
  return pairs;
}

bool is_db_uri(std::string_view s) {
  return s.starts_with("postgresql://") || s.starts_with("postgres://");
}

std::optional<std::string> parse_db_url(settings& s, const std::string& v) {
  if (is_db_uri(v)) {
    if (std::any_of(v.begin(), v.end(), [](char c) {
          return std::isspace(static_cast<unsigned char>(c)) ||
                 std::iscntrl(static_cast<unsigned char>(c));
        }))
      return quote(redact_db_url(v)) +
             " contains white space; expected a URI with special characters percent-encoded";
  } else if (!v.empty()) {
    const auto pairs = parse_conninfo(v);
    if (!pairs || pairs->empty())
      return quote(redact_db_url(v)) +
             " is not a PostgreSQL connection string; expected "
             "postgresql://user:password@host:5432/dbname or key=value pairs such as "
             "\"host=localhost dbname=otter user=otter\"";
  }
  s.db_url = v;
  return std::nullopt;
}

std::optional<std::string> parse_signing_key(settings& s, const std::string& v) {
  // Loading and checking the key is the crypto module's job; here only obvious mistakes.
  if (!v.empty() && !v.starts_with("-----BEGIN") && v.find('\n') != std::string::npos)
    return "a path must not contain a newline; expected a PEM file path or the PEM text "
           "itself (starting with -----BEGIN)";
  s.signing_key = v;
  return std::nullopt;
}

std::string_view trim(std::string_view x) {
  while (!x.empty() && std::isspace(static_cast<unsigned char>(x.front()))) x.remove_prefix(1);
  while (!x.empty() && std::isspace(static_cast<unsigned char>(x.back()))) x.remove_suffix(1);
  return x;
}

// The items of a comma-separated list, trimmed; empty items are kept (the caller decides).
std::vector<std::string_view> split_list(std::string_view v) {
  std::vector<std::string_view> items;
  for (;;) {
    const std::size_t comma = v.find(',');
    items.push_back(trim(v.substr(0, comma)));
    if (comma == std::string_view::npos) return items;
    v.remove_prefix(comma + 1);
  }
}

template <class Range>
std::string join_list(const Range& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ',';
    out += item;
  }
  return out;
}

std::optional<std::string> parse_operators(settings& s, const std::string& v) {
  std::map<std::string, role> ops;
  for (const std::string_view item : split_list(v)) {
    if (!item.empty()) {  // tolerate a trailing comma
      const std::size_t colon = item.find(':');
      if (colon == std::string_view::npos)
        return "entry " + quote(item) +
               " has no role; expected name:role,... with role admin or viewer";
      const std::string name(trim(item.substr(0, colon)));
      const std::string r(trim(item.substr(colon + 1)));
      if (!protocol::valid_name(name))
        return "operator name " + quote(name) +
               " is invalid; expected 1 to 64 characters of [A-Za-z0-9_.-]";
      role parsed{};
      if (r == "admin")
        parsed = role::admin;
      else if (r == "viewer")
        parsed = role::viewer;
      else
        return "operator " + name + " has role " + quote(r) + "; expected admin or viewer";
      if (!ops.emplace(name, parsed).second)
        return "operator " + name + " is listed twice; give each operator one role";
    }
  }
  s.operators = std::move(ops);
  return std::nullopt;
}

std::optional<std::string> parse_bool(const std::string& v, bool& out) {
  const std::string l = lower(v);
  if (l == "1" || l == "true" || l == "yes")
    out = true;
  else if (l == "0" || l == "false" || l == "no")
    out = false;
  else
    return quote(v) + " is not a boolean; expected 1, 0, true, false, yes or no";
  return std::nullopt;
}

// "all", "none", or kinds separated by commas.
std::optional<std::string> parse_event_kinds(const std::string& v,
                                             std::optional<std::set<std::string>>& out) {
  const std::string l = lower(v);
  if (l == "all") {
    out.reset();
    return std::nullopt;
  }
  std::set<std::string> kinds;
  if (l != "none") {
    const auto& known = event_kinds();
    for (const std::string_view kind : split_list(l)) {
      if (std::find(known.begin(), known.end(), kind) == known.end())
        return quote(kind) + " is not an event kind; expected all, none or a list of " +
               join_list(known);
      kinds.emplace(kind);
    }
  }
  out = std::move(kinds);
  return std::nullopt;
}

std::string show_event_kinds(const std::optional<std::set<std::string>>& kinds) {
  if (!kinds) return "all";
  if (kinds->empty()) return "none";
  return join_list(*kinds);
}

std::optional<std::string> parse_optional_path(const std::string& v, std::string& out) {
  if (v.find('\n') != std::string::npos || v.find('\0') != std::string::npos)
    return quote(v) + " is not a usable path; expected a file path";
  out = v;
  return std::nullopt;
}

std::string or_unset(const std::string& s) {
  return s.empty() ? kUnset : s;
}

std::string show_operators(const settings& s) {
  if (s.operators.empty()) return "(none)";
  std::string out;
  for (const auto& [name, r] : s.operators) {
    if (!out.empty()) out += ',';
    out += name + ":" + std::string(to_string(r));
  }
  return out;
}

std::string show_signing_key(const settings& s) {
  if (s.signing_key.starts_with("-----BEGIN")) return "(inline PEM, not shown)";
  return or_unset(s.signing_key);
}

// Display order is the order of this table; so is --help and the README.
const std::vector<option_spec>& specs() {
  static const std::vector<option_spec> table = {
      {"OTTER_MQTT_URL", "mqtt-url", "URL", "tcp://127.0.0.1:1883",
       "MQTT broker: tcp://host:port or ssl://host:port", false, false, parse_mqtt_url,
       [](const settings& s) { return s.mqtt_url; }},
      {"OTTER_MQTT_USER", "mqtt-user", "NAME", kUnset, "MQTT user name", false, false,
       [](settings& s, const std::string& v) -> std::optional<std::string> {
         s.mqtt_user = v;
         return std::nullopt;
       },
       [](const settings& s) { return or_unset(s.mqtt_user); }},
      {"OTTER_MQTT_PASSWORD", "mqtt-password", "SECRET", kUnset,
       "MQTT password (never printed; prefer the variable: flags show in ps)", false, true,
       [](settings& s, const std::string& v) -> std::optional<std::string> {
         s.mqtt_password = v;
         return std::nullopt;
       },
       [](const settings& s) { return std::string(s.mqtt_password.empty() ? kUnset : "***"); }},
      {"OTTER_MQTT_CLIENT_ID", "mqtt-client-id", "ID", "otterd-<instance>",
       "MQTT client id; unique per instance", false, false,
       [](settings& s, const std::string& v) -> std::optional<std::string> {
         if (v.empty() || v.size() > 256 || !protocol::valid_utf8(v) ||
             std::any_of(v.begin(), v.end(),
                         [](char c) { return std::iscntrl(static_cast<unsigned char>(c)); }))
           return quote(v) + " is not a usable client id; expected 1 to 256 printable characters";
         s.mqtt_client_id = v;
         return std::nullopt;
       },
       [](const settings& s) { return s.mqtt_client_id; }},
      {"OTTER_DB_URL", "db-url", "URL", "(required)",
       "PostgreSQL: postgresql://user:password@host:5432/db or \"host=... dbname=...\"", false,
       false, parse_db_url,  // not "secret": its parser echoes only redact_db_url()
       [](const settings& s) { return or_unset(redact_db_url(s.db_url)); }},
      {"OTTER_SIGNING_KEY", "signing-key", "PEM", "(required)",
       "manifest signing key: P-256 private key PEM file (PKCS#8 or SEC1), or the PEM text", false,
       true, parse_signing_key, show_signing_key},
      {"OTTER_TOPIC_ROOT", "topic-root", "ROOT", "ota/v1",
       "MQTT topic root (no wildcards, no leading or trailing /)", false, false,
       [](settings& s, const std::string& v) -> std::optional<std::string> {
         if (!protocol::valid_topic_root(v) || !protocol::valid_utf8(v))
           return quote(v) +
                  " is not a topic root; expected non-empty UTF-8 without + or # and without a "
                  "leading or trailing /, e.g. ota/v1";
         s.topic_root = v;
         return std::nullopt;
       },
       [](const settings& s) { return s.topic_root; }},
      {"OTTER_DATA_DIR", "data-dir", "DIR", "./otter-data", "directory of the image store", false,
       false,
       [](settings& s, const std::string& v) -> std::optional<std::string> {
         if (v.empty()) return std::string("\"\" is not a directory; expected e.g. /var/lib/otter");
         if (auto e = parse_optional_path(v, s.data_dir)) return e;
         return std::nullopt;
       },
       [](const settings& s) { return s.data_dir; }},
      {"OTTER_OPERATORS", "operators", "LIST", "(none)",
       "operators and roles: name:admin|viewer,... (empty: no operator may do anything)", false,
       false, parse_operators, show_operators},
      {"OTTER_INSTANCE", "instance", "NAME", "host name",
       "this instance's name ([A-Za-z0-9_.-], 1..64), in service topics", false, false,
       [](settings& s, const std::string& v) -> std::optional<std::string> {
         if (!protocol::valid_name(v))
           return quote(v) +
                  " is not an instance name; expected 1 to 64 characters of "
                  "[A-Za-z0-9_.-]";
         s.instance = v;
         return std::nullopt;
       },
       [](const settings& s) { return s.instance; }},
      {"OTTER_MANIFEST_TTL", "manifest-ttl", "DURATION", "3600",
       "lifetime of a signed manifest: seconds 60..604800 or 1h, 2d...", false, false,
       [](settings& s, const std::string& v) {
         return parse_duration(v, 60, 604800, s.manifest_ttl);
       },
       [](const settings& s) { return std::to_string(s.manifest_ttl.count()) + "s"; }},
      {"OTTER_RETRY_S", "retry-s", "DURATION", "600",
       "retry_s told to up-to-date devices: seconds 10..604800 or 10m...", false, false,
       [](settings& s, const std::string& v) { return parse_duration(v, 10, 604800, s.retry); },
       [](const settings& s) { return std::to_string(s.retry.count()) + "s"; }},
      {"OTTER_LOG_LEVEL", "log-level", "LEVEL", "info",
       "trace, debug, info, warn, error, critical or off", false, false,
       [](settings& s, const std::string& v) {
         return parse_choice(v, "log level",
                             {"trace", "debug", "info", "warn", "error", "critical", "off"},
                             s.log_level);
       },
       [](const settings& s) { return s.log_level; }},
      {"OTTER_LOG_FORMAT", "log-format", "FORMAT", "text", "text or json (one object a line)",
       false, false,
       [](settings& s, const std::string& v) {
         return parse_choice(v, "log format", {"text", "json"}, s.log_format);
       },
       [](const settings& s) { return s.log_format; }},
      {"OTTER_MAX_UPLOAD", "max-upload", "SIZE", "16M",
       "largest image upload: bytes or K/M/G (KiB/MiB/GiB), at most 1G", false, false,
       [](settings& s, const std::string& v) { return parse_size(v, 1, kGiB, s.max_upload); },
       [](const settings& s) {
         return std::to_string(s.max_upload) + " (" + human_bytes(s.max_upload) + ")";
       }},
      {"OTTER_QUEUE_LIMIT", "queue-limit", "N", "100000",
       "records the DB writer holds while PostgreSQL is away (1000..10000000)", false, false,
       [](settings& s, const std::string& v) {
         return parse_int(v, 1000, 10000000, s.queue_limit);
       },
       [](const settings& s) { return std::to_string(s.queue_limit); }},
      {"OTTER_SHARE_GROUP", "share-group", "NAME", "(none)",
       "MQTT shared subscription group ($share/NAME/...) so instances split devices", false, false,
       [](settings& s, const std::string& v) -> std::optional<std::string> {
         if (!v.empty() && !protocol::valid_name(v))
           return quote(v) +
                  " is not a group name; expected empty or 1 to 64 characters of "
                  "[A-Za-z0-9_.-]";
         s.share_group = v;
         return std::nullopt;
       },
       [](const settings& s) {
         return s.share_group.empty() ? std::string("(none: plain subscriptions)") : s.share_group;
       }},
      {"OTTER_HTTP_ADDR", "http-addr", "HOST:PORT", kUnset,
       "HTTP listen address for downloads, e.g. 0.0.0.0:8080", false, false,
       [](settings& s, const std::string& v) -> std::optional<std::string> {
         if (!v.empty() && !parse_host_port(v))
           return quote(v) +
                  " is not an address; expected host:port or [v6]:port, e.g. 0.0.0.0:8080";
         s.http_addr = v;
         return std::nullopt;
       },
       [](const settings& s) { return or_unset(s.http_addr); }},
      {"OTTER_PUBLIC_URL", "public-url", "URL", kUnset,
       "base URL devices use to reach the HTTP server (http:// or https://); unset: http:// and "
       "OTTER_HTTP_ADDR",
       false, false,
       [](settings& s, const std::string& v) -> std::optional<std::string> {
         std::string_view rest(v);
         if (rest.starts_with("http://"))
           rest.remove_prefix(7);
         else if (rest.starts_with("https://"))
           rest.remove_prefix(8);
         else if (!v.empty())
           rest = {};
         const bool bad_chars = std::any_of(v.begin(), v.end(), [](char c) {
           return std::isspace(static_cast<unsigned char>(c)) ||
                  std::iscntrl(static_cast<unsigned char>(c));
         });
         if (!v.empty() && (rest.empty() || rest.front() == '/' || bad_chars))
           return quote(v) + " is not a URL; expected http://host[:port][/path] or https://...";
         std::string url = v;
         while (url.ends_with('/')) url.pop_back();  // links are built as base + "/..."
         s.public_url = url;
         return std::nullopt;
       },
       [](const settings& s) { return or_unset(s.public_url); }},
      {"OTTER_LINK_SECRET_FILE", "link-secret-file", "FILE", kUnset,
       "file holding the secret that signs download links; unset: link-secret in OTTER_DATA_DIR, "
       "made on first start",
       false, false,
       [](settings& s, const std::string& v) { return parse_optional_path(v, s.link_secret_file); },
       [](const settings& s) { return or_unset(s.link_secret_file); }},
      {"OTTER_RELEASE_KEYS", "release-keys", "FILE", kUnset,
       "P-256 public keys (PEM blocks, concatenated) that may sign releases", false, false,
       [](settings& s, const std::string& v) { return parse_optional_path(v, s.release_keys); },
       [](const settings& s) { return or_unset(s.release_keys); }},
      {"OTTER_REQUIRE_SIGNED", "require-signed", "BOOL", "false",
       "refuse releases not signed by a release key (1/0/true/false/yes/no)", true, false,
       [](settings& s, const std::string& v) { return parse_bool(v, s.require_signed); },
       [](const settings& s) { return std::string(s.require_signed ? "true" : "false"); }},
      {"OTTER_CHUNK_MAX", "chunk-max", "BYTES", "4096",
       "largest chunk a device may ask for (64..65536)", false, false,
       [](settings& s, const std::string& v) { return parse_int(v, 64, 65536, s.chunk_max); },
       [](const settings& s) { return std::to_string(s.chunk_max); }},
      {"OTTER_CHUNK_WINDOW", "chunk-window", "N", "16", "most chunks per chunk request (1..256)",
       false, false,
       [](settings& s, const std::string& v) { return parse_int(v, 1, 256, s.chunk_window); },
       [](const settings& s) { return std::to_string(s.chunk_window); }},
      {"OTTER_UPLOAD_GC", "upload-gc", "DURATION", "24h",
       "unfinished uploads are removed after this long (1m..30d)", false, false,
       [](settings& s, const std::string& v) {
         return parse_duration(v, 60, 30 * 86400, s.upload_gc);
       },
       [](const settings& s) { return std::to_string(s.upload_gc.count()) + "s"; }},
      {"OTTER_EVENT_RETENTION", "event-retention", "DURATION", "30d",
       "events older than this are deleted, except successful uploads and commands that change "
       "something (1d..3650d, at least OTTER_MANIFEST_TTL); 0 keeps every event",
       false, false,
       [](settings& s, const std::string& v) {
         std::chrono::seconds r{};
         const auto problem = parse_duration(v, 0, 3650ull * 86400, r);
         if (problem && problem->find("not a duration") != std::string::npos) return problem;
         if (problem || (r.count() != 0 && r < std::chrono::days{1}))
           return std::optional<std::string>(quote(v) +
                                             " is out of range; expected 1d..3650d, or 0 to "
                                             "keep every event");
         s.event_retention = r;
         return std::optional<std::string>();
       },
       [](const settings& s) { return std::to_string(s.event_retention.count()) + "s"; }},
      {"OTTER_EVENTS", "events", "KINDS", "all",
       "event kinds published on R/events/<kind>: all, none, or a list such as status,command "
       "(every event is recorded in PostgreSQL either way)",
       false, false,
       [](settings& s, const std::string& v) { return parse_event_kinds(v, s.published_events); },
       [](const settings& s) { return show_event_kinds(s.published_events); }},
  };
  return table;
}

const option_spec* find_flag(std::string_view name) {
  for (const auto& o : specs())
    if (name == o.flag) return &o;
  return nullptr;
}

std::string prefix(const option_spec& o) {
  return std::string(o.env) + " (--" + o.flag + "): ";
}

error bad(std::string message) {
  return make_error(errc::bad_request, std::move(message));
}

bool is_help(std::string_view a) {
  return a == "--help" || a == "-h";
}

std::string host_name() {
  std::array<char, 256> buf{};
  if (::gethostname(buf.data(), buf.size() - 1) != 0) return {};
  return std::string(buf.data());
}

}  // namespace

std::string_view to_string(role r) noexcept {
  return r == role::admin ? "admin" : "viewer";
}

const std::vector<option_doc>& options() {
  static const std::vector<option_doc> docs = [] {
    std::vector<option_doc> out;
    for (const auto& o : specs())
      out.push_back({o.env, std::string("--") + o.flag, o.metavar, o.default_text, o.help});
    return out;
  }();
  return docs;
}

env_lookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

bool wants_help(const std::vector<std::string>& args) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (is_help(a)) return true;
    if (!a.starts_with("--") || a.find('=') != std::string::npos) continue;
    // Skip a value so that e.g. "--mqtt-password -h" is not taken for a help request.
    const option_spec* o = find_flag(std::string_view(a).substr(2));
    if (o != nullptr && i + 1 < args.size() && !args[i + 1].starts_with("--")) ++i;
  }
  return false;
}

result<settings> load(const std::vector<std::string>& args, const env_lookup& env,
                      bool require_service_settings) {
  std::map<const option_spec*, std::string> given;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (is_help(a)) return bad(a + " is handled by the caller before loading the configuration");
    if (!a.starts_with("--") || a.size() == 2) {
      if (a.starts_with("-")) return bad("unknown option " + a + "; see --help");
      return bad("unexpected argument " + quote(a) + "; options are --name VALUE or " +
                 "--name=VALUE; see --help");
    }
    const std::size_t eq = a.find('=');
    const std::string name = a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    const option_spec* o = find_flag(name);
    if (o == nullptr) return bad("unknown option --" + name + "; see --help");
    std::string value;
    if (eq != std::string::npos) {
      value = a.substr(eq + 1);
    } else if (i + 1 < args.size() && !args[i + 1].starts_with("--")) {
      value = args[++i];
    } else if (o->boolean) {
      value = "true";
    } else {
      return bad(prefix(*o) + "missing value; expected --" + o->flag + " " + o->metavar + " or --" +
                 o->flag + "=" + o->metavar);
    }
    if (!given.emplace(o, std::move(value)).second)
      return bad(prefix(*o) + "given more than once on the command line");
  }

  settings s;
  for (const auto& o : specs()) {
    std::optional<std::string> value;
    if (auto it = given.find(&o); it != given.end()) {
      value = it->second;
    } else if (auto e = env(o.env); e && !e->empty()) {
      value = std::move(e);
    }
    if (!value) continue;
    if (auto problem = o.parse(s, *value)) {
      // A secret may not reach the log, not even a malformed one (the parsers of secrets
      // avoid echoing it; this is the safety net).
      if (o.secret && problem->find(*value) != std::string::npos)
        problem = "invalid value (not shown)";
      return bad(prefix(o) + *problem);
    }
  }

  if (s.instance.empty()) s.instance = sanitize_instance(host_name());
  if (s.mqtt_client_id.empty()) s.mqtt_client_id = "otterd-" + s.instance;

  if (require_service_settings) {
    if (s.db_url.empty())
      return bad(
          "OTTER_DB_URL (--db-url) is required: a PostgreSQL connection string, e.g. "
          "postgresql://otter:PASSWORD@localhost:5432/otter");
    if (s.signing_key.empty())
      return bad(
          "OTTER_SIGNING_KEY (--signing-key) is required: a PEM P-256 private key file; make "
          "one with `otterd keygen --out otter-signing.pem`");
  }
  // Offer events restore the chunk grants of a restart for as long as a manifest is valid.
  if (s.event_retention.count() != 0 && s.event_retention < s.manifest_ttl)
    return bad("OTTER_EVENT_RETENTION (--event-retention) " +
               human_seconds(static_cast<std::uint64_t>(s.event_retention.count())) +
               " is shorter than OTTER_MANIFEST_TTL (--manifest-ttl) " +
               human_seconds(static_cast<std::uint64_t>(s.manifest_ttl.count())) +
               ": a restarted otterd would forget offers devices may still download by; keep "
               "events at least as long as a manifest is valid");
  if (s.require_signed && s.release_keys.empty())
    return bad(
        "OTTER_REQUIRE_SIGNED (--require-signed) is true but OTTER_RELEASE_KEYS "
        "(--release-keys) is not set: no release could ever be accepted; set the release keys "
        "file or turn signing off");
  return s;
}

std::vector<std::string> warnings(const settings& s) {
  std::vector<std::string> out;
  if (s.operators.empty())
    out.push_back(
        "OTTER_OPERATORS (--operators) is empty: no operator may do anything; set e.g. "
        "alice:admin,bob:viewer");
  // Plain TCP to a loopback broker is fine; across the network it exposes the password.
  if (!s.mqtt_password.empty() && s.mqtt_url.starts_with("tcp://")) {
    const auto broker = parse_host_port(std::string_view(s.mqtt_url).substr(6));
    const bool loopback = broker && (broker->first == "localhost" || broker->first == "::1" ||
                                     broker->first.starts_with("127."));
    if (!loopback)
      out.push_back(
          "OTTER_MQTT_PASSWORD is sent unencrypted over tcp://; use ssl:// in OTTER_MQTT_URL");
  }
  return out;
}

std::string help_text(std::string_view program, std::string_view usage_line) {
  std::size_t w_flag = 4, w_env = 3, w_def = 7;
  for (const auto& o : options()) {
    w_flag = std::max(w_flag, o.flag.size() + 1 + o.metavar.size());
    w_env = std::max(w_env, o.env.size());
    w_def = std::max(w_def, o.default_text.size());
  }
  auto pad = [](std::string s, std::size_t w) {
    s.resize(std::max(s.size(), w), ' ');
    return s;
  };
  std::string out = "Usage: " + std::string(program) + " " + std::string(usage_line) + "\n\n";
  out +=
      "Every setting is an environment variable and a flag; the flag wins. Write --flag VALUE\n"
      "or --flag=VALUE (the latter for values starting with --). -h, --help: this text.\n\n";
  out += "  " + pad("FLAG", w_flag) + "  " + pad("ENV", w_env) + "  " + pad("DEFAULT", w_def) +
         "  HELP\n";
  for (const auto& o : options())
    out += "  " + pad(o.flag + " " + o.metavar, w_flag) + "  " + pad(o.env, w_env) + "  " +
           pad(o.default_text, w_def) + "  " + o.help + "\n";
  return out;
}

std::string describe(const settings& s) {
  std::size_t w = 0;
  for (const auto& o : specs()) w = std::max(w, std::string_view(o.env).size());
  std::string out;
  for (const auto& o : specs()) {
    std::string name = o.env;
    name.resize(w, ' ');
    out += name + "  " + o.show(s) + "\n";
  }
  return out;
}

std::string redact_db_url(std::string_view url) {
  std::string out(url);
  if (is_db_uri(url)) {
    // Like libpq: user info runs from after "://" to an '@' met before any '/'.
    const std::size_t start = out.find("://") + 3;
    const std::size_t stop = out.find_first_of("@/", start);
    std::size_t query_from = start;
    if (stop != std::string::npos && out[stop] == '@') {
      const std::size_t colon = out.find(':', start);
      if (colon != std::string::npos && colon < stop && colon + 1 < stop) {
        out.replace(colon + 1, stop - colon - 1, "***");
      }
      query_from = out.find('@', start);
    }
    const std::size_t q = out.find('?', query_from);
    if (q == std::string::npos) return out;
    std::string query = out.substr(q + 1), rebuilt;
    std::size_t pos = 0;
    while (true) {
      const std::size_t amp = query.find('&', pos);
      std::string param = query.substr(pos, amp == std::string::npos ? amp : amp - pos);
      if (lower(param).starts_with("password=") && param.size() > 9) param = "password=***";
      rebuilt += param;
      if (amp == std::string::npos) break;
      rebuilt += '&';
      pos = amp + 1;
    }
    return out.substr(0, q + 1) + rebuilt;
  }
  const auto pairs = parse_conninfo(url);
  if (!pairs) {
    // Not understood: hide everything from a password keyword on, if there is one.
    const std::size_t p = lower(out).find("password");
    return p == std::string::npos ? out : out.substr(0, p) + "password=***";
  }
  for (auto it = pairs->rbegin(); it != pairs->rend(); ++it)  // back to front keeps spans valid
    if (it->keyword == "password" && it->value_end > it->value_begin)
      out.replace(it->value_begin, it->value_end - it->value_begin, "***");
  return out;
}

std::string sanitize_instance(std::string_view host) {
  std::string out;
  for (char c : host.substr(0, 64)) out += host_char(c) ? c : '-';
  return out.empty() ? "otterd" : out;
}

std::optional<std::pair<std::string, std::uint16_t>> parse_host_port(std::string_view s) {
  std::string_view host, port;
  if (s.starts_with("[")) {
    const std::size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':')
      return std::nullopt;
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
    if (host.empty() || !std::all_of(host.begin(), host.end(), [](char c) {
          return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
        }))
      return std::nullopt;
  } else {
    const std::size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    if (host.empty() || !std::all_of(host.begin(), host.end(), host_char)) return std::nullopt;
  }
  const auto n = parse_uint(port);
  if (!n || *n < 1 || *n > 65535) return std::nullopt;
  return std::pair{std::string(host), static_cast<std::uint16_t>(*n)};
}

const std::vector<std::string>& event_kinds() {
  static const std::vector<std::string> kinds = {"check", "offer",   "status", "chunk",
                                                 "error", "command", "upload"};
  return kinds;
}

}  // namespace otter::config
