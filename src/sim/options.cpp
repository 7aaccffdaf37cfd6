#include "sim/options.hpp"

#include <charconv>
#include <cmath>
#include <functional>
#include <map>

#include "protocol/ids.hpp"
#include "protocol/semver.hpp"
#include "protocol/topics.hpp"

namespace otter::sim {

const char* const kUsage = R"(otter-sim: a simulated fleet of devices that take updates from otterd.

Usage:
  otter-sim --devices N --model M --version V --pubkey FILE [OPTIONS]

Each device has its own MQTT connection (client id = device id), checks for updates every
--interval seconds, verifies the signed answer with the pinned key, downloads an offered
image by chunk requests, verifies it and reports its progress, as PROTOCOL.md describes.

Required:
  --devices N            number of devices (1..100000)
  --model M              the devices' model
  --version V            the version they run at start (semver)
  --pubkey FILE          PEM public key of the service's signing key (printed by
                         `otterd keygen`; or `openssl pkey -in KEY -pubout`)
Options:
  --mqtt URL             broker, tcp://host:port (default: $OTTER_MQTT_URL, else
                         tcp://127.0.0.1:1883)
  --root R               topic root (default ota/v1)
  --prefix P             device ids P-0000, P-0001, ... (default sim)
  --attrs k=v[,k=v]      attributes sent with every check (for group rollouts)
  --interval S           seconds between checks per device, +-20 % jitter (default 30)
  --via mqtt|http        how devices fetch an image: MQTT chunk requests (default), or the
                         manifest's signed HTTP link (otterd needs OTTER_HTTP_ADDR)
  --chunk N              bytes per chunk (default: the manifest's chunk.max)
  --window N             chunks per request (default: the manifest's chunk.window)
  --fail-rate F          0..1: share of updates that fail at install (status failed); half
                         as many more roll back after the reboot (status rolled_back)
  --until-version V      exit 0 as soon as every device runs V
  --timeout S            with --until-version: give up after S seconds (exit 1); without
                         it: run for S seconds, then exit 0 (default 600)
  --json-summary         also print the final report as one JSON object on stdout
  --no-download          do not fetch images: verify the manifest, report downloading,
                         verifying, installing and success (for a service without chunk
                         delivery)
  --release-key FILE     PEM public key that signs releases: every image must carry an
                         image_sig that verifies with it (unsigned images are refused)
  --workers N            threads that run the devices (default: CPUs, at most 4)
  --log-level L          log level of the MQTT layer: trace..off (default error)
  --help                 this text

While running, a one-line summary goes to stderr (every second on a terminal, else every
5 s); the final report (devices per state and version, download and update times, errors by
code) goes to stderr, and with --json-summary also to stdout.

Exit status: 0 done (goal reached), 1 goal not reached before --timeout (or interrupted),
2 usage or connection error.
)";

namespace {

error usage(std::string message) {
  return make_error(errc::bad_request, std::move(message));
}

std::optional<long long> to_int(const std::string& s) {
  long long v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<double> to_double(const std::string& s) {
  double v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

result<nlohmann::json> parse_attrs(const std::string& text) {
  nlohmann::json attrs = nlohmann::json::object();
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto comma = text.find(',', start);
    const auto pair =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const auto eq = pair.find('=');
    if (eq == std::string::npos || eq == 0)
      return usage("--attrs: \"" + pair + "\" is not k=v (write --attrs site=w3,ring=beta)");
    const auto key = pair.substr(0, eq);
    const auto value = pair.substr(eq + 1);
    if (key.size() > 32) return usage("--attrs: key \"" + key + "\" is longer than 32 characters");
    if (value.size() > 128)
      return usage("--attrs: the value of \"" + key + "\" is longer than 128 characters");
    if (attrs.contains(key)) return usage("--attrs: key \"" + key + "\" is given twice");
    attrs[key] = value;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (attrs.size() > 16) return usage("--attrs: at most 16 pairs");
  return attrs;
}

}  // namespace

std::string device_id(const std::string& prefix, int index, int count) {
  std::size_t width = 4;
  while (count > 1 && std::to_string(count - 1).size() > width) ++width;
  auto n = std::to_string(index);
  if (n.size() < width) n.insert(0, width - n.size(), '0');
  return prefix + "-" + n;
}

result<sim_options> parse_options(const std::vector<std::string>& args, const char* env_mqtt_url) {
  sim_options o;
  if (env_mqtt_url && *env_mqtt_url) o.mqtt_url = env_mqtt_url;
  bool have_devices = false;

  // Each option: whether it takes a value, and what to do with it (an error message or "").
  using setter = std::function<std::string(const std::string&)>;
  const auto positive_int = [](const char* name, long long max, auto store) {
    return [=](const std::string& v) -> std::string {
      const auto n = to_int(v);
      if (!n || *n < 1 || *n > max)
        return std::string(name) + " wants a whole number from 1 to " + std::to_string(max) +
               ", not \"" + v + "\"";
      store(*n);
      return {};
    };
  };
  const auto seconds = [](const char* name, double& out) {
    return [name, &out](const std::string& v) -> std::string {
      const auto d = to_double(v);
      if (!d || *d <= 0)
        return std::string(name) + " wants a positive number of seconds, not \"" + v + "\"";
      out = *d;
      return {};
    };
  };
  const auto version = [](const char* name, auto& out) {
    return [name, &out](const std::string& v) -> std::string {
      if (!protocol::parse_semver(v))
        return std::string(name) + " wants a semantic version such as 1.0.0, not \"" + v + "\"";
      out = v;
      return {};
    };
  };
  const auto text = [](std::string& out) {
    return [&out](const std::string& v) -> std::string {
      out = v;
      return {};
    };
  };
  std::map<std::string, setter, std::less<>> with_value = {
      {"--devices", positive_int("--devices", 100000,
                                 [&](long long n) {
                                   o.devices = static_cast<int>(n);
                                   have_devices = true;
                                 })},
      {"--model",
       [&](const std::string& v) -> std::string {
         if (!protocol::valid_name(v))
           return "--model wants 1 to 64 characters of [A-Za-z0-9_.-], not \"" + v + "\"";
         o.model = v;
         return {};
       }},
      {"--version", version("--version", o.version)},
      {"--pubkey", text(o.pubkey_file)},
      {"--mqtt",
       [&](const std::string& v) -> std::string {
         if (!v.starts_with("tcp://") && !v.starts_with("ssl://") && !v.starts_with("mqtt://"))
           return "--mqtt wants tcp://host:port, not \"" + v + "\"";
         o.mqtt_url = v;
         return {};
       }},
      {"--root",
       [&](const std::string& v) -> std::string {
         if (!protocol::valid_topic_root(v))
           return "--root wants a topic root such as ota/v1 (no wildcards, no leading or "
                  "trailing /), not \"" +
                  v + "\"";
         o.root = v;
         return {};
       }},
      {"--prefix",
       [&](const std::string& v) -> std::string {
         if (!protocol::valid_name(v) || v.size() > 50)
           return "--prefix wants 1 to 50 characters of [A-Za-z0-9_.-], not \"" + v + "\"";
         o.prefix = v;
         return {};
       }},
      {"--attrs",
       [&](const std::string& v) -> std::string {
         auto a = parse_attrs(v);
         if (!a) return a.error().message;
         o.attrs = std::move(*a);
         return {};
       }},
      {"--interval", seconds("--interval", o.interval_s)},
      {"--via",
       [&](const std::string& v) -> std::string {
         if (v != "mqtt" && v != "http") return "--via wants mqtt or http, not \"" + v + "\"";
         o.via_http = v == "http";
         return {};
       }},
      {"--chunk", positive_int("--chunk", 1 << 20,
                               [&](long long n) { o.chunk = static_cast<std::uint32_t>(n); })},
      {"--window", positive_int("--window", 4096,
                                [&](long long n) { o.window = static_cast<std::uint32_t>(n); })},
      {"--fail-rate",
       [&](const std::string& v) -> std::string {
         const auto d = to_double(v);
         if (!d || *d < 0 || *d > 1)
           return "--fail-rate wants a number from 0 to 1 (e.g. 0.03), not \"" + v + "\"";
         o.fail_rate = *d;
         return {};
       }},
      {"--until-version", version("--until-version", o.until_version)},
      {"--timeout", seconds("--timeout", o.timeout_s)},
      {"--release-key", text(o.release_key_file)},
      {"--workers",
       positive_int("--workers", 64, [&](long long n) { o.workers = static_cast<int>(n); })},
      {"--log-level",
       [&](const std::string& v) -> std::string {
         static const char* const kLevels[] = {"trace", "debug",    "info", "warn",
                                               "error", "critical", "off"};
         for (const char* l : kLevels)
           if (v == l) {
             o.log_level = v;
             return {};
           }
         return "--log-level wants trace, debug, info, warn, error, critical or off";
       }},
  };
  std::map<std::string, std::function<void()>, std::less<>> flags = {
      {"--json-summary", [&] { o.json_summary = true; }},
      {"--no-download", [&] { o.download = false; }},
      {"--help", [&] { o.help = true; }},
      {"-h", [&] { o.help = true; }},
  };

  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string name = args[i];
    std::optional<std::string> value;
    if (const auto eq = name.find('='); name.starts_with("--") && eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    if (const auto f = flags.find(name); f != flags.end()) {
      if (value) return usage(name + " takes no value");
      f->second();
      continue;
    }
    const auto s = with_value.find(name);
    if (s == with_value.end())
      return usage("unknown option \"" + args[i] + "\" (otter-sim --help lists them)");
    if (!value) {
      if (i + 1 >= args.size()) return usage(name + " needs a value (otter-sim --help)");
      value = args[++i];
    }
    if (auto err = s->second(*value); !err.empty()) return usage(err);
  }
  if (o.help) return o;

  std::string missing;
  if (!have_devices) missing += " --devices";
  if (o.model.empty()) missing += " --model";
  if (o.version.empty()) missing += " --version";
  if (o.pubkey_file.empty()) missing += " --pubkey";
  if (!missing.empty())
    return usage("missing" + missing +
                 " (e.g. otter-sim --devices 100 --model esp32-devkitc --version 1.0.0 "
                 "--pubkey signing.pub)");
  if (o.mqtt_url.starts_with("mqtt://")) o.mqtt_url.replace(0, 4, "tcp");
  return o;
}

}  // namespace otter::sim
