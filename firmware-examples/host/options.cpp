#include "options.hpp"

#include <charconv>
#include <cstdlib>

namespace otter::device_host {

const char* const kUsage =
    R"(otter-device-host: one device on the host, driven by the portable device core.

usage: otter-device-host --id ID --model MODEL --version V --pubkey PEM --slot FILE
                         --state-dir DIR [options]

  --mqtt URL            broker (default $OTTER_MQTT_URL or tcp://localhost:1883)
  --user U, --password P  MQTT credentials where the broker wants them (client id is always ID)
  --id ID               device id = MQTT client id
  --model MODEL         device model
  --version V           running version on first start (later: the state dir's)
  --pubkey PEM          pinned manifest key (PEM public key)
  --release-key PEM     pinned release key: images must carry a valid image_sig
  --root R              topic root (default ota/v1)
  --chunk LEN           largest chunk this device takes (default 1024)
  --window N            chunks per request at most (default 4)
  --attr K=V            check attribute (repeatable)
  --slot FILE           the "flash partition" the image is written to
  --state-dir DIR       survives "reboots": running version, pending install, download progress
  --timeout S           give up after S seconds (default 120)
  --chunk-timeout MS    ask again after MS without a chunk (default 3000)
  --stop-after BYTES    simulate a power loss once BYTES are in the slot (exit status 3)

exit status: 0 updated (or up to date), 1 failure, 2 usage, 3 simulated power loss
)";

namespace {

template <typename T>
bool to_number(const std::string& s, T& out) {
  const auto* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, out);
  return ec == std::errc() && p == end;
}

}  // namespace

std::optional<options> parse_options(int argc, char** argv, std::string& error) {
  options o;
  if (const char* url = std::getenv("OTTER_MQTT_URL"); url && *url) o.mqtt_url = url;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      error.clear();
      return std::nullopt;
    }
    if (i + 1 >= argc) {
      error = "missing value for " + a;
      return std::nullopt;
    }
    const std::string v = argv[++i];
    bool ok = true;
    if (a == "--mqtt")
      o.mqtt_url = v;
    else if (a == "--user")
      o.user = v;
    else if (a == "--password")
      o.password = v;
    else if (a == "--id")
      o.id = v;
    else if (a == "--model")
      o.model = v;
    else if (a == "--version")
      o.version = v;
    else if (a == "--pubkey")
      o.pubkey_file = v;
    else if (a == "--release-key")
      o.release_key_file = v;
    else if (a == "--root")
      o.root = v;
    else if (a == "--chunk")
      ok = to_number(v, o.chunk) && o.chunk > 0;
    else if (a == "--window")
      ok = to_number(v, o.window) && o.window > 0;
    else if (a == "--slot")
      o.slot_file = v;
    else if (a == "--state-dir")
      o.state_dir = v;
    else if (a == "--timeout")
      ok = to_number(v, o.timeout_s) && o.timeout_s > 0;
    else if (a == "--chunk-timeout")
      ok = to_number(v, o.chunk_timeout_ms) && o.chunk_timeout_ms > 0;
    else if (a == "--stop-after")
      ok = to_number(v, o.stop_after);
    else if (a == "--attr") {
      const auto eq = v.find('=');
      ok = eq != std::string::npos && eq > 0;
      if (ok) o.attrs.emplace_back(v.substr(0, eq), v.substr(eq + 1));
    } else {
      error = "unknown option " + a;
      return std::nullopt;
    }
    if (!ok) {
      error = "bad value for " + a + ": " + v;
      return std::nullopt;
    }
  }
  for (const auto& [name, value] :
       {std::pair{"--id", &o.id}, std::pair{"--model", &o.model},
        std::pair{"--version", &o.version}, std::pair{"--pubkey", &o.pubkey_file},
        std::pair{"--slot", &o.slot_file}, std::pair{"--state-dir", &o.state_dir}}) {
    if (value->empty()) {
      error = std::string(name) + " is required";
      return std::nullopt;
    }
  }
  return o;
}

}  // namespace otter::device_host
