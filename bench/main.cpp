// otter-bench: see options.cpp (kUsage) and the README's "Performance" section.
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>

#include "checks.hpp"
#include "chunks.hpp"
#include "cpu_usage.hpp"
#include "crypto/hash.hpp"
#include "crypto/jws.hpp"
#include "device_pool.hpp"
#include "http_load.hpp"
#include "nginx_runner.hpp"
#include "operator_session.hpp"
#include "options.hpp"
#include "otterd_runner.hpp"
#include "report.hpp"
#include "responder.hpp"
#include "rounds.hpp"
#include "stats.hpp"
#include "support/child_process.hpp"

namespace otter::bench {
namespace {

using test::child_process;
using test::run_command;

using namespace std::chrono_literals;

constexpr const char* kModel = "bench-model";
constexpr const char* kFromVersion = "1.0.0";
constexpr const char* kToVersion = "2.0.0";

std::atomic<bool> g_interrupted{false};

void on_interrupt(int) {
  g_interrupted = true;
}

void check_interrupted() {
  if (g_interrupted.load()) throw std::runtime_error("interrupted");
}

void progress(const std::string& phase, const std::string& what) {
  std::cerr << "[" << phase << "] " << what << std::endl;
}

std::string fmt2(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

std::string self_exe() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) throw std::runtime_error("cannot find my own executable: " + ec.message());
  return p.string();
}

// A folder of ours for configs, logs, the image and otterd's data; 0755 because nginx's workers
// (user nobody) must reach the file they serve.
std::filesystem::path make_work_dir() {
  char tmpl[] = "/tmp/otter-bench-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  ::chmod(tmpl, 0755);
  return tmpl;
}

std::string command_version(const std::vector<std::string>& argv) {
  try {
    auto r = run_command(argv);
    auto out = r.output;
    if (auto nl = out.find('\n'); nl != std::string::npos) out = out.substr(0, nl);
    return out;
  } catch (const std::exception&) {
    return "?";
  }
}

// The no-op responder as a child process (see responder.hpp).
class responder_process {
 public:
  responder_process(const stack_env& env, const std::filesystem::path& dir, std::size_t offer,
                    std::uint64_t image_size) {
    static int n = 0;
    proc_ = std::make_unique<child_process>(
        std::vector<std::string>{self_exe(), "responder", "--offer-size", std::to_string(offer),
                                 "--image-size", std::to_string(image_size)},
        std::map<std::string, std::string>{
            {"OTTER_TEST_MQTT_URL", env.mqtt_url},
            {"OTTER_TEST_MQTT_SERVICE_USER", env.service_user},
            {"OTTER_TEST_MQTT_SERVICE_PASSWORD", env.service_password},
            {"OTTER_TEST_MQTT_OPERATOR_PASSWORD", env.operator_password},
            {"OTTER_TEST_DB_URL", env.db_url}},
        dir / ("responder-" + std::to_string(++n) + ".log"));
    if (!proc_->wait_for_log({"responder ready"}, 20s))
      throw std::runtime_error("the no-op responder did not come up:\n" + proc_->log_tail());
  }
  ~responder_process() { proc_->stop(SIGTERM, 10s); }
  pid_t pid() const { return proc_->pid(); }

 private:
  std::unique_ptr<child_process> proc_;
};

struct offer_sample {
  std::size_t bytes = 0;
  std::string file;
  std::string url;
  std::uint64_t size = 0;
};

// One check by device 0 to otterd, closed loop: the real offer (its size, for the responder's
// padding), its chunk file and its signed URL. Verifies the signature, as a device would.
offer_sample sample_offer(device_pool& pool, const protocol::topics& topics,
                          const crypto::ec_key& key) {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<std::string> answer;
  // The handler sees this frame's locals: it must be gone when the frame is, throw or not.
  struct unset_handler {
    device_pool& pool;
    ~unset_handler() { pool.set_handler(nullptr); }
  } guard{pool};
  pool.set_handler([&](int, std::string_view topic, std::string_view payload) {
    if (!topic.ends_with("/down/offer") && !topic.ends_with("/down/error")) return;
    std::lock_guard lock(mu);
    answer = std::string(topic) + " " + std::string(payload);
    cv.notify_all();
  });
  const nlohmann::json check = {{"req", "probe-1"},
                                {"model", kModel},
                                {"version", kFromVersion},
                                {"nonce", crypto::to_hex(crypto::random_bytes(16))}};
  if (auto r = pool.publish(0, topics.device_check(pool.id(0)), check.dump()); !r)
    throw std::runtime_error("cannot send the probe check: " + r.error().message);
  {
    std::unique_lock lock(mu);
    cv.wait_for(lock, 15s, [&] { return answer.has_value(); });
  }
  pool.set_handler(nullptr);  // `answer` is ours alone from here
  if (!answer) throw std::runtime_error("otterd did not answer the probe check within 15 s");
  const auto space = answer->find(' ');
  const auto topic = answer->substr(0, space);
  const auto payload = answer->substr(space + 1);
  if (!topic.ends_with("/down/offer"))
    throw std::runtime_error("otterd refused the probe check: " + payload);
  const auto j = nlohmann::json::parse(payload, nullptr, false);
  if (!j.is_object() || !j.value("update", false) || !j.contains("manifest"))
    throw std::runtime_error("the probe check got no update offer: " + payload);
  auto v = crypto::jws_verify(key, j["manifest"].get<std::string>());
  if (!v) throw std::runtime_error("the offer's manifest does not verify: " + v.error().message);
  offer_sample s;
  s.bytes = payload.size();
  s.file = v->claims["chunk"].value("file", "");
  s.url = v->claims.value("url", "");
  s.size = v->claims.value("size", std::uint64_t{0});
  if (s.file.empty() || s.url.empty())
    throw std::runtime_error("the offer lacks chunk.file or url: " + v->claims.dump());
  return s;
}

// What a server process and the broker spent on one run.
struct cpu_pair {
  cpu_meter server, broker, db, load;
  cpu_pair(pid_t server_pid, bool children) {
    server.watch(server_pid, children);
    broker.watch(stack_broker_pid());
    db.watch(stack_db_pid(), true);
    load.watch(::getpid());
    server.start();
    broker.start();
    db.start();
    load.start();
  }
};

void run_check_sweep(const std::string& who, check_load& load, const bench_options& o, pid_t server,
                     std::vector<check_point>& out) {
  progress("checks", who + ": warm-up, one check per device");
  if (auto r = load.warm_up(30s); !r)
    throw std::runtime_error(who + " warm-up: " + r.error().message);
  int failed = 0;
  for (int rate : o.check_rates) {
    check_interrupted();
    cpu_pair cpu(server, false);
    auto p = load.run(rate, o.check_seconds, o.p99_bound_ms);
    p.server_cpu_s = cpu.server.seconds();
    p.broker_cpu_s = cpu.broker.seconds();
    p.db_cpu_s = cpu.db.seconds();
    p.load_cpu_s = cpu.load.seconds();
    progress("checks", who + " " + std::to_string(rate) + "/s: achieved " +
                           std::to_string(static_cast<int>(p.achieved)) + "/s, p50 " +
                           fmt2(p.p50_ms) + " ms, p99 " + fmt2(p.p99_ms) + " ms, answered " +
                           std::to_string(p.answered) + "/" + std::to_string(p.sent) +
                           (p.errors ? ", errors " + std::to_string(p.errors) : "") + ", cpu " +
                           fmt2(p.server_cpu_s) + " s (broker " + fmt2(p.broker_cpu_s) +
                           " s, postgres " + fmt2(p.db_cpu_s) + " s, otter-bench " +
                           fmt2(p.load_cpu_s) + " s)" + (p.sustained ? "" : "  (not sustained)"));
    out.push_back(p);
    // Two rates in a row far past saturation tell nothing more, and take long to drain.
    failed = p.achieved < 0.8 * rate ? failed + 1 : 0;
    if (failed >= 2) {
      progress("checks", who + ": saturated, skipping higher rates");
      break;
    }
    std::this_thread::sleep_for(500ms);  // let queues drain between rates
  }
}

void run_chunk_series(const std::string& who, device_pool& pool, const protocol::topics& topics,
                      const bench_options& o, const offer_sample& offer, pid_t server,
                      std::vector<chunk_point>& out) {
  for (int n : o.chunk_devices) {
    check_interrupted();
    chunk_job job;
    job.devices = n;
    job.total_bytes = o.chunk_total_mib * 1024 * 1024;
    job.chunk_len = o.chunk_len;
    job.window = o.window;
    job.file = offer.file;
    job.image_size = offer.size;
    progress("chunks", who + ": " + std::to_string(n) + " device(s), " +
                           std::to_string(o.chunk_total_mib) + " MiB ...");
    cpu_pair cpu(server, false);
    auto p = run_chunks(pool, topics, job);
    p.server_cpu_s = cpu.server.seconds();
    p.broker_cpu_s = cpu.broker.seconds();
    progress("chunks", who + ": " + std::to_string(n) + " device(s): " + fmt2(p.mb_s) +
                           " MB/s over " + fmt2(p.seconds) + " s, cpu " + fmt2(p.server_cpu_s) +
                           " s (broker " + fmt2(p.broker_cpu_s) + " s)" +
                           (p.complete ? "" : "  INCOMPLETE: " + p.problem) +
                           (p.refused ? ", refused " + std::to_string(p.refused) : ""));
    out.push_back(p);
    std::this_thread::sleep_for(500ms);
  }
}

void run_http_series(const std::string& who, http_job base, const bench_options& o, pid_t server,
                     bool with_children, std::vector<http_point>& out) {
  if (auto e = http_probe(base); !e.empty()) throw std::runtime_error(who + ": " + e);
  for (int c : o.http_clients) {
    check_interrupted();
    base.clients = c;
    base.seconds = o.http_seconds;
    cpu_pair cpu(server, with_children);
    auto p = run_http(base);
    p.server_cpu_s = cpu.server.seconds();
    progress("http",
             who + ": " + std::to_string(c) + " client(s): " + fmt2(p.mb_s) + " MB/s, " +
                 std::to_string(p.downloads) + " downloads, cpu " + fmt2(p.server_cpu_s) + " s" +
                 (p.errors ? ", " + std::to_string(p.errors) + " failed: " + p.first_error : ""));
    out.push_back(p);
  }
}

int run(const bench_options& o) {
  auto env = stack_from_environment();
  if (!env) {
    std::cerr << "otter-bench: " << env.error().message << "\n";
    return 2;
  }
  if (o.run_http && nginx_binary().empty()) {
    std::cerr << "otter-bench: nginx not found (apt-get install nginx-light; scripts/bench.sh "
                 "installs it), or leave http out of --phases\n";
    return 2;
  }
  const auto dir = make_work_dir();
  results res;
  res.machine = machine_summary();
  res.versions = command_version({"/usr/sbin/mosquitto", "-h"}) + "; " +
                 command_version({"/usr/lib/postgresql/15/bin/postgres", "--version"}) + "; " +
                 command_version({nginx_binary().empty() ? "nginx" : nginx_binary(), "-v"});
  for (const auto& [k, v] : o.otterd_env)
    res.otterd_env += (res.otterd_env.empty() ? "" : " ") + k + "=" + v;
  const protocol::topics topics("ota/v1");
  int exit_code = 0;
  try {
    // ---- setup: otterd with an image, a release and an `all` rollout
    progress("setup", "work folder " + dir.string());
    progress("setup", "scratch database, signing key (otterd keygen), " + o.otterd);
    otterd_runner otterd(*env, o.otterd, dir, o.http_port, o.otterd_env);
    otterd.start();
    const std::uint64_t image_size = o.image_mib * 1024 * 1024;
    std::string image;
    {
      const auto bytes = crypto::random_bytes(image_size);
      image.assign(bytes.begin(), bytes.end());
    }
    const auto image_path = dir / "image.bin";
    std::ofstream(image_path, std::ios::binary)
        .write(image.data(), static_cast<std::streamsize>(image.size()));
    res.image_bytes = image_size;
    {
      operator_session admin(*env, topics, "admin1");
      if (auto r = admin.connect(15s); !r)
        throw std::runtime_error("operator: " + r.error().message);
      progress("setup", "uploading the " + std::to_string(o.image_mib) + " MiB image");
      auto up = admin.upload("bench-image", image);
      if (!up) throw std::runtime_error("upload: " + up.error().message);
      auto rel = admin.cmd(
          "release.add", {{"model", kModel}, {"version", kToVersion}, {"sha256", (*up)["sha256"]}});
      if (!rel) throw std::runtime_error("release.add: " + rel.error().message);
      auto ro = admin.cmd("rollout.create", {{"name", "bench"},
                                             {"model", kModel},
                                             {"version", kToVersion},
                                             {"target", {{"type", "all"}}}});
      if (!ro) throw std::runtime_error("rollout.create: " + ro.error().message);
    }
    image.clear();
    image.shrink_to_fit();
    int pool_size = o.check_devices;
    for (int n : o.chunk_devices) pool_size = std::max(pool_size, n);
    progress("setup", "connecting " + std::to_string(pool_size) + " devices");
    device_pool pool(*env, topics, "bench", pool_size);
    if (auto r = pool.connect(60s); !r) throw std::runtime_error("devices: " + r.error().message);
    const auto offer = sample_offer(pool, topics, otterd.key());
    res.offer_bytes = offer.bytes;
    progress("setup",
             "a real offer is " + std::to_string(offer.bytes) + " bytes; chunk file " + offer.file);
    otterd.stop();

    if (o.run_checks) {
      res.load.emplace_back("checks", load_average());
      check_load load(pool, topics, kModel, kFromVersion);
      for (int round = 1; round <= o.check_rounds; ++round) {
        const std::string of = o.check_rounds > 1 ? " (round " + std::to_string(round) + "/" +
                                                        std::to_string(o.check_rounds) + ")"
                                                  : "";
        auto responder_sweep = [&] {
          responder_process echo(*env, dir, offer.bytes, offer.size);
          run_check_sweep("responder" + of, load, o, echo.pid(), res.echo_rounds.emplace_back());
        };
        auto otterd_sweep = [&] {
          otterd.start();
          run_check_sweep("otterd" + of, load, o, otterd.pid(), res.otterd_rounds.emplace_back());
          otterd.stop();
        };
        // Alternating which side goes first keeps a drift of the machine off one side.
        if (round % 2 == 1) {
          responder_sweep();
          otterd_sweep();
        } else {
          otterd_sweep();
          responder_sweep();
        }
      }
      res.echo_checks = combine_rounds(res.echo_rounds);
      res.otterd_checks = combine_rounds(res.otterd_rounds);
    }
    if (o.run_chunks) {
      res.load.emplace_back("chunks", load_average());
      {
        responder_process echo(*env, dir, offer.bytes, offer.size);
        run_chunk_series("broker", pool, topics, o, offer, echo.pid(), res.broker_chunks);
      }
      otterd.start();
      {
        // A device may fetch only a file offered to it: every device checks first.
        check_load load(pool, topics, kModel, kFromVersion);
        if (auto r = load.warm_up(30s); !r)
          throw std::runtime_error("checks: " + r.error().message);
      }
      run_chunk_series("otterd", pool, topics, o, offer, otterd.pid(), res.otterd_chunks);
      otterd.stop();
    }
    if (o.run_http) {
      res.load.emplace_back("http", load_average());
      http_job job;
      job.expected_size = offer.size;
      {
        nginx_runner nginx({dir / "nginx", o.nginx_port, o.nginx_workers, o.nginx_sendfile});
        const auto path = nginx.publish(image_path);
        nginx.start();
        if (!split_http_url(nginx.base_url() + path, job.host, job.port, job.target))
          throw std::runtime_error("bad nginx URL");
        run_http_series("nginx", job, o, nginx.pid(), true, res.nginx_http);
        nginx.stop();
      }
      otterd.start();
      if (!split_http_url(offer.url, job.host, job.port, job.target))
        throw std::runtime_error("the offer's url is not http://host:port/...: " + offer.url);
      run_http_series("otterd", job, o, otterd.pid(), false, res.otterd_http);
      otterd.stop();
    }
    res.load.emplace_back("end", load_average());
  } catch (const std::exception& e) {
    std::cerr << "otter-bench: " << e.what() << "\n";
    exit_code = 1;
  }
  if (o.json)
    std::cout << to_json(res, o).dump(2) << "\n";
  else
    print_report(std::cout, res, o);
  if (!o.json_out.empty()) {
    std::ofstream out(o.json_out);
    out << to_json(res, o).dump(2) << "\n";
    if (!out) {
      std::cerr << "otter-bench: cannot write " << o.json_out << "\n";
      exit_code = exit_code ? exit_code : 1;
    }
  }
  std::error_code ec;
  if (o.keep || exit_code != 0)
    std::cerr << "otter-bench: logs and configs kept in " << dir.string() << "\n";
  else
    std::filesystem::remove_all(dir, ec);
  return exit_code;
}

}  // namespace
}  // namespace otter::bench

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (!args.empty() && args[0] == "responder")
      return otter::bench::run_responder({args.begin() + 1, args.end()});
  } catch (const std::exception& e) {
    std::cerr << "otter-bench responder: " << e.what() << "\n";
    return 2;
  }
  auto o = otter::bench::parse_options(args);
  if (!o) {
    std::cerr << "otter-bench: " << o.error().message << "\n";
    return 2;
  }
  if (o->help) {
    std::cout << otter::bench::kUsage;
    return 0;
  }
  // The adapter logs every connection at info; hundreds of devices would drown the progress.
  spdlog::set_level(spdlog::level::warn);
  ::signal(SIGINT, otter::bench::on_interrupt);
  ::signal(SIGTERM, otter::bench::on_interrupt);
  ::signal(SIGPIPE, SIG_IGN);
  return otter::bench::run(*o);
}
