// otter-sim: a fleet of simulated devices against otterd (see options.cpp for the usage).
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

#include "crypto/ec_key.hpp"
#include "sim/fleet.hpp"
#include "sim/options.hpp"
#include "sim/report.hpp"

namespace {

using namespace std::chrono_literals;
using otter::sim::sim_clock;

std::atomic<bool> g_stop{false};
extern "C" void on_signal(int) {
  g_stop.store(true);
}

// A pinned key from a PEM file: a public key, or (for convenience) a private key whose public
// half is kept. nullopt after printing what to do.
std::optional<otter::crypto::ec_key> load_key(const std::string& file, const char* option,
                                              const char* what) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    std::cerr << "otter-sim: cannot read " << option << " " << file << ": " << std::strerror(errno)
              << "\n(" << what << ")\n";
    return std::nullopt;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const auto pem = ss.str();
  if (auto k = otter::crypto::ec_key::from_public_pem(pem)) return std::move(*k);
  if (auto k = otter::crypto::ec_key::from_private_pem(pem)) {
    std::cerr << "otter-sim: note: " << option << " " << file
              << " is a private key; devices need only its public half (openssl pkey -in " << file
              << " -pubout)\n";
    return otter::crypto::ec_key::from_public_pem(k->public_pem()).value();
  }
  std::cerr << "otter-sim: " << option << " " << file
            << " is not a PEM P-256 public key (\"-----BEGIN PUBLIC KEY-----\")\n(" << what
            << ")\n";
  return std::nullopt;
}

// One socket per device: make room for thousands.
void raise_open_files(int devices) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  const rlim_t want = static_cast<rlim_t>(devices) + 256;
  if (lim.rlim_cur >= want) return;
  lim.rlim_cur = std::min(want, lim.rlim_max);
  setrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_cur < want)
    std::cerr << "otter-sim: warning: the open-file limit (" << lim.rlim_max << ") is below "
              << want << ": some devices may not connect (raise it: ulimit -n " << want << ")\n";
}

double seconds_since(sim_clock::time_point t) {
  return std::chrono::duration<double>(sim_clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  auto parsed = otter::sim::parse_options(args, std::getenv("OTTER_MQTT_URL"));
  if (!parsed) {
    std::cerr << "otter-sim: " << parsed.error().message << "\n";
    return 2;
  }
  const auto& o = *parsed;
  if (o.help) {
    std::cout << otter::sim::kUsage;
    return 0;
  }
  spdlog::set_level(spdlog::level::from_str(o.log_level));

  auto pinned = load_key(o.pubkey_file, "--pubkey",
                         "pass the service's public key: `otterd keygen` prints it, or "
                         "`openssl pkey -in SIGNING_KEY.pem -pubout`");
  if (!pinned) return 2;
  std::optional<otter::crypto::ec_key> release_key;
  if (!o.release_key_file.empty()) {
    release_key = load_key(o.release_key_file, "--release-key",
                           "pass the PEM public key whose private half signs releases");
    if (!release_key) return 2;
  }
  raise_open_files(o.devices);

  otter::sim::fleet_config cfg;
  cfg.mqtt_url = o.mqtt_url;
  cfg.root = o.root;
  cfg.prefix = o.prefix;
  cfg.devices = o.devices;
  cfg.version = otter::protocol::parse_semver(o.version).value();
  cfg.workers = o.workers > 0
                    ? o.workers
                    : static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 4u));
  auto& st = cfg.settings;
  st.model = o.model;
  st.attrs = o.attrs;
  st.interval = std::chrono::milliseconds(static_cast<std::int64_t>(o.interval_s * 1000));
  st.first_check_within = st.interval;  // spread the first checks over one interval
  st.chunk_len = o.chunk;
  st.window = o.window;
  st.fail_rate = o.fail_rate;
  st.download = o.download;
  st.via = o.via_http ? otter::sim::transport::http : otter::sim::transport::mqtt;
  // Pretend durations (±20 %): long enough to see devices in each phase, short for a demo.
  st.fake_download_time = 1000ms;
  st.install_time = 500ms;
  st.reboot_time = 1000ms;
  st.pinned = &*pinned;
  st.release_key = release_key ? &*release_key : nullptr;

  const bool tty = isatty(STDERR_FILENO) == 1;
  otter::sim::fleet fleet(cfg);
  const auto connect_start = sim_clock::now();
  std::cerr << "otter-sim: connecting " << o.devices << " devices to " << o.mqtt_url << "\n";
  const auto connect_timeout = 30s + std::chrono::milliseconds(5) * o.devices;
  if (auto r =
          fleet.connect(std::chrono::duration_cast<std::chrono::milliseconds>(connect_timeout));
      !r) {
    std::cerr << "otter-sim: " << r.error().message << "\n";
    return 2;
  }
  std::cerr << "otter-sim: " << o.devices << " devices connected in "
            << static_cast<int>(seconds_since(connect_start) * 1000) << " ms; model " << o.model
            << ", version " << o.version << ", check every " << o.interval_s << " s"
            << (o.download ? (o.via_http ? ", download by HTTP" : ", download by MQTT chunks")
                           : ", --no-download")
            << (o.until_version ? ", until every device runs " + *o.until_version : "") << "\n";

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  fleet.start();
  const auto start = sim_clock::now();
  const auto live_every = tty ? 1s : 5s;
  auto next_live = start + live_every;
  auto last_live = start;
  std::uint64_t last_checks = 0;
  otter::sim::run_info info;
  info.goal = o.until_version.value_or("");
  info.download = o.download;
  for (;;) {
    std::this_thread::sleep_for(100ms);
    const auto s = fleet.stats(false);
    if (!info.goal.empty() && s.running(info.goal) == s.devices) {
      info.goal_reached = true;
      break;
    }
    if (g_stop.load()) {
      info.interrupted = true;
      break;
    }
    if (seconds_since(start) >= o.timeout_s) {
      info.timed_out = true;
      break;
    }
    const auto t = sim_clock::now();
    if (t >= next_live) {
      const double dt = std::chrono::duration<double>(t - last_live).count();
      const auto line = otter::sim::live_line(s, seconds_since(start),
                                              static_cast<double>(s.checks - last_checks) / dt);
      if (tty)
        std::cerr << "\r" << line << "\x1b[K" << std::flush;
      else
        std::cerr << line << "\n";
      last_checks = s.checks;
      last_live = t;
      next_live = t + live_every;
    }
  }
  info.elapsed_s = seconds_since(start);
  fleet.stop();
  const auto s = fleet.stats(true);
  info.exit_code = info.goal.empty() || info.goal_reached ? 0 : 1;
  if (tty) std::cerr << "\r\x1b[K";
  std::cerr << otter::sim::final_report(s, info) << std::flush;
  if (o.json_summary) std::cout << otter::sim::json_report(s, info).dump() << std::endl;
  return info.exit_code;
}
