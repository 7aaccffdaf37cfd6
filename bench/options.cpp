#include "options.hpp"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <sstream>

namespace otter::bench {

const char* const kUsage = R"(Usage: otter-bench [options]
       (normally through scripts/bench.sh, which builds it and starts a stack for it)

Measures otterd beside references on the same machine and prints them side by side:
  checks  check -> offer round trips, open loop at fixed rates, latency from the intended
          send time; otterd beside a no-op responder (same MQTT adapter, same broker)
  chunks  MQTT chunk delivery (4 KiB chunks, window 16) for 1, 10 and 100 devices; otterd
          beside the same responder sending the same bytes from memory (the broker's rate)
  http    HTTP download by 1 and 20 clients; otterd beside nginx serving the same file
It starts otterd (scratch database, fresh signing key), the responder and nginx itself, one
MQTT responder at a time. It needs the stack's variables (scripts/stack.sh env):
OTTER_TEST_MQTT_URL, OTTER_TEST_MQTT_SERVICE_USER, OTTER_TEST_MQTT_SERVICE_PASSWORD,
OTTER_TEST_MQTT_OPERATOR_PASSWORD, OTTER_TEST_DB_URL.

Options:
  --phases LIST          checks,chunks,http (default all three)
  --rates LIST           check rates per second (default 500,1000,1500,2000,2250,2500,
                         2750,3000,3250,3500,3750,4000,4500,5000,6000: steps of 250 where
                         the two sustained rates fall, which is the ratio's resolution)
  --check-devices N      device connections sending checks (default 200)
  --check-seconds S      seconds per rate (default 3)
  --check-rounds N       sweeps of the rates per side, responder and otterd alternating
                         (default 3); a rate is sustained when more than half of the rounds
                         sustained it, and the table shows the rounds' medians
  --p99-bound MS         a rate counts as sustained in a round only with p99 below this
                         (default 50)
  --chunk-devices LIST   concurrent downloading devices (default 1,10,100)
  --chunk-mib N          MiB delivered per chunk run, split among the devices (default 64)
  --http-clients LIST    concurrent HTTP clients (default 1,20)
  --http-seconds S       seconds per HTTP run (default 4)
  --image-mib N          image size, 1..16 MiB (default 16: the stack broker's upload limit)
  --nginx-workers N      nginx worker_processes (default 2, the machine's cores: see README)
  --nginx-sendfile on|off  (default on, as Debian's nginx.conf)
  --http-port P          otterd's HTTP port (default 18890)
  --nginx-port P         nginx's port (default 18891)
  --otterd PATH          the otterd to run (default: the one built with the bench)
  --otterd-env K=V       an OTTER_* setting for otterd over the bench's own (repeatable),
                         e.g. --otterd-env OTTER_EVENTS=none to measure without R/events
  --json                 print the results as JSON instead of the table
  --json-out FILE        also write the results as JSON to FILE
  --keep                 keep the work folder (logs, configs) and print its path
  -h, --help             this text

Environment: OTTER_BENCH_TRACE=DIR writes DIR/checks-<rate>-<n>.csv per check run: each
check's intended send time, how late the bench sent it and its round trip (for tails).
)";

namespace {

result<double> to_number(const std::string& opt, const std::string& v, double lo, double hi) {
  double d = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
  if (ec != std::errc{} || p != v.data() + v.size() || d < lo || d > hi) {
    std::ostringstream msg;
    msg << opt << ": expected a number from " << lo << " to " << hi << ", got \"" << v << "\"";
    return make_error(errc::bad_request, msg.str());
  }
  return d;
}

result<std::vector<int>> to_list(const std::string& opt, const std::string& v, int lo, int hi) {
  std::vector<int> out;
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ',')) {
    auto n = to_number(opt, item, lo, hi);
    if (!n) return n.error();
    out.push_back(static_cast<int>(*n));
  }
  if (out.empty()) return make_error(errc::bad_request, opt + ": expected a comma-separated list");
  return out;
}

}  // namespace

result<bench_options> parse_options(const std::vector<std::string>& args) {
  bench_options o;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    std::string value;
    bool has_value = false;
    if (const auto eq = a.find('='); a.starts_with("--") && eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_value = true;
    }
    if (a == "-h" || a == "--help") {
      o.help = true;
      continue;
    }
    if (a == "--json") {
      o.json = true;
      continue;
    }
    if (a == "--keep") {
      o.keep = true;
      continue;
    }
    if (!a.starts_with("--"))
      return make_error(errc::bad_request, "unexpected argument \"" + a + "\" (see --help)");
    static const std::vector<std::string> valued = {
        "--phases",    "--rates",         "--check-devices",  "--check-seconds", "--check-rounds",
        "--p99-bound", "--chunk-devices", "--chunk-mib",      "--http-clients",  "--http-seconds",
        "--image-mib", "--nginx-workers", "--nginx-sendfile", "--http-port",     "--nginx-port",
        "--otterd",    "--otterd-env",    "--json-out"};
    if (std::find(valued.begin(), valued.end(), a) == valued.end())
      return make_error(errc::bad_request, "unknown option " + a + " (see --help)");
    if (!has_value) {
      if (i + 1 >= args.size()) return make_error(errc::bad_request, a + ": needs a value");
      value = args[++i];
    }
    auto num = [&](double lo, double hi) { return to_number(a, value, lo, hi); };
    auto list = [&](int lo, int hi) { return to_list(a, value, lo, hi); };
    if (a == "--phases") {
      o.run_checks = o.run_chunks = o.run_http = false;
      std::stringstream ss(value);
      std::string p;
      while (std::getline(ss, p, ',')) {
        if (p == "checks")
          o.run_checks = true;
        else if (p == "chunks")
          o.run_chunks = true;
        else if (p == "http")
          o.run_http = true;
        else
          return make_error(errc::bad_request,
                            "--phases: unknown phase \"" + p + "\" (checks, chunks, http)");
      }
    } else if (a == "--rates") {
      auto r = list(1, 1000000);
      if (!r) return r.error();
      o.check_rates = *r;
    } else if (a == "--check-devices") {
      auto n = num(1, 5000);
      if (!n) return n.error();
      o.check_devices = static_cast<int>(*n);
    } else if (a == "--check-seconds") {
      auto n = num(0.5, 600);
      if (!n) return n.error();
      o.check_seconds = *n;
    } else if (a == "--check-rounds") {
      auto n = num(1, 9);
      if (!n) return n.error();
      o.check_rounds = static_cast<int>(*n);
    } else if (a == "--p99-bound") {
      auto n = num(0.1, 60000);
      if (!n) return n.error();
      o.p99_bound_ms = *n;
    } else if (a == "--chunk-devices") {
      auto r = list(1, 1000);
      if (!r) return r.error();
      o.chunk_devices = *r;
    } else if (a == "--chunk-mib") {
      auto n = num(1, 100000);
      if (!n) return n.error();
      o.chunk_total_mib = static_cast<std::uint64_t>(*n);
    } else if (a == "--http-clients") {
      auto r = list(1, 1000);
      if (!r) return r.error();
      o.http_clients = *r;
    } else if (a == "--http-seconds") {
      auto n = num(0.5, 600);
      if (!n) return n.error();
      o.http_seconds = *n;
    } else if (a == "--image-mib") {
      auto n = num(1, 16);
      if (!n) return n.error();
      o.image_mib = static_cast<std::uint64_t>(*n);
    } else if (a == "--nginx-workers") {
      auto n = num(1, 64);
      if (!n) return n.error();
      o.nginx_workers = static_cast<int>(*n);
    } else if (a == "--nginx-sendfile") {
      if (value != "on" && value != "off")
        return make_error(errc::bad_request, "--nginx-sendfile: expected on or off");
      o.nginx_sendfile = value == "on";
    } else if (a == "--http-port") {
      auto n = num(1, 65535);
      if (!n) return n.error();
      o.http_port = static_cast<int>(*n);
    } else if (a == "--json-out") {
      if (value.empty()) return make_error(errc::bad_request, "--json-out: needs a file name");
      o.json_out = value;
    } else if (a == "--otterd") {
      if (value.empty()) return make_error(errc::bad_request, "--otterd: needs a path");
      o.otterd = value;
    } else if (a == "--otterd-env") {
      const auto eq = value.find('=');
      const auto key = value.substr(0, eq);
      const bool key_ok = key.size() > 6 && key.starts_with("OTTER_") &&
                          std::all_of(key.begin(), key.end(), [](char c) {
                            return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
                          });
      if (eq == std::string::npos || !key_ok)
        return make_error(errc::bad_request,
                          "--otterd-env: expected OTTER_NAME=value, e.g. OTTER_EVENTS=none");
      o.otterd_env.emplace_back(key, value.substr(eq + 1));
    } else if (a == "--nginx-port") {
      auto n = num(1, 65535);
      if (!n) return n.error();
      o.nginx_port = static_cast<int>(*n);
    } else {
      return make_error(errc::bad_request, "unknown option " + a + " (see --help)");
    }
  }
  if (!o.help && !o.run_checks && !o.run_chunks && !o.run_http)
    return make_error(errc::bad_request, "--phases: nothing to run");
  return o;
}

result<stack_env> stack_from_environment() {
  stack_env e;
  std::string missing;
  auto get = [&](const char* name, std::string& out) {
    const char* v = std::getenv(name);
    if (v && *v)
      out = v;
    else
      missing += std::string(missing.empty() ? "" : ", ") + name;
  };
  get("OTTER_TEST_MQTT_URL", e.mqtt_url);
  get("OTTER_TEST_MQTT_SERVICE_USER", e.service_user);
  get("OTTER_TEST_MQTT_SERVICE_PASSWORD", e.service_password);
  get("OTTER_TEST_MQTT_OPERATOR_PASSWORD", e.operator_password);
  get("OTTER_TEST_DB_URL", e.db_url);
  if (!missing.empty())
    return make_error(errc::unavailable,
                      missing +
                          " not set: run the bench through scripts/bench.sh, or start a "
                          "stack (scripts/stack.sh start) and eval \"$(scripts/stack.sh "
                          "env)\" first");
  return e;
}

}  // namespace otter::bench
