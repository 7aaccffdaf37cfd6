#include "report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace otter::bench {
namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string mark(double ratio, double target) {
  if (!std::isfinite(ratio)) return "n/a";
  return ratio >= target ? "PASS" : "BELOW";
}

// CPU milliseconds per unit of work (1000 checks, one MB).
double cpu_ms_per(double cpu_s, double units) {
  return units > 0 ? cpu_s * 1000 / units : 0;
}

double ratio_of(double ours, double reference) {
  return reference > 0 ? ours / reference : std::nan("");
}

const check_point* at_rate(const std::vector<check_point>& v, int rate) {
  for (const auto& p : v)
    if (p.offered == rate) return &p;
  return nullptr;
}

std::string check_cells(const check_point* p) {
  if (!p) return std::string(8, ' ') + "-" + std::string(38, ' ');
  char buf[112];
  std::snprintf(buf, sizeof buf, "%9.0f %8.2f %8.2f %2d/%d%s %8.0f", p->achieved, p->p50_ms,
                p->p99_ms, p->runs_sustained, p->runs, p->sustained ? " " : "*",
                cpu_ms_per(p->server_cpu_s, p->answered / 1000.0));
  return buf;
}

// "3500, 4000, 3500"
std::string sustained_per_round(const std::vector<std::vector<check_point>>& rounds) {
  std::string out;
  for (const auto& sweep : rounds)
    out += (out.empty() ? "" : ", ") + fmt("%.0f", sustained_rate(sweep));
  return out;
}

}  // namespace

int sustained_rate(const std::vector<check_point>& points) {
  int best = 0;
  for (const auto& p : points)
    if (p.sustained) best = std::max(best, p.offered);
  return best;
}

double peak_rate(const std::vector<check_point>& points) {
  double best = 0;
  for (const auto& p : points) best = std::max(best, p.achieved);
  return best;
}

void print_report(std::ostream& out, const results& r, const bench_options& o) {
  out << "\notter-bench on " << r.machine << "\n";
  if (!r.versions.empty()) out << r.versions << "\n";
  if (!r.otterd_env.empty()) out << "otterd run with " << r.otterd_env << "\n";
  for (const auto& [phase, load] : r.load)
    out << "load average at " << phase << ": " << load << "\n";

  if (!r.echo_checks.empty() || !r.otterd_checks.empty()) {
    out << "\nCHECKS: check -> offer round trips, open loop, " << o.check_devices << " devices, "
        << o.check_seconds << " s per rate; latency from the intended send "
        << "time; offer " << r.offer_bytes << " bytes; " << r.echo_rounds.size()
        << " round(s) per side, alternating\n"
        << "(achieved, p50, p99: medians of the rounds; ok: rounds that sustained the rate, i.e.\n"
        << " answered everything without error, achieved >= 95 % of offered and p99 <= "
        << o.p99_bound_ms << " ms;\n * = not sustained in more than half of the rounds)\n";
    out << "  offered/s |               no-op responder              |"
           "                    otterd\n"
        << "            |  achieved   p50 ms   p99 ms   ok  cpu ms/1k |  achieved   p50 ms   p99 ms"
           "   ok  cpu ms/1k\n";
    std::vector<int> rates;
    for (const auto& p : r.echo_checks) rates.push_back(p.offered);
    for (const auto& p : r.otterd_checks) rates.push_back(p.offered);
    std::sort(rates.begin(), rates.end());
    rates.erase(std::unique(rates.begin(), rates.end()), rates.end());
    for (int rate : rates) {
      char head[32];
      std::snprintf(head, sizeof head, "  %9d | ", rate);
      out << head << check_cells(at_rate(r.echo_checks, rate)) << " | "
          << check_cells(at_rate(r.otterd_checks, rate)) << "\n";
    }
    const int se = sustained_rate(r.echo_checks), so = sustained_rate(r.otterd_checks);
    const double ratio = ratio_of(so, se);
    out << "  sustained rate (highest offered rate sustained): responder " << se << "/s, otterd "
        << so << "/s, ratio " << fmt("%.2f", ratio) << " (target >= " << kCheckTarget << ") "
        << mark(ratio, kCheckTarget) << "\n";
    if (r.echo_rounds.size() > 1 || r.otterd_rounds.size() > 1) {
      out << "  sustained rate per round: responder " << sustained_per_round(r.echo_rounds)
          << "; otterd " << sustained_per_round(r.otterd_rounds) << "; ratios";
      for (std::size_t i = 0; i < std::min(r.echo_rounds.size(), r.otterd_rounds.size()); ++i)
        out << " "
            << fmt("%.2f",
                   ratio_of(sustained_rate(r.otterd_rounds[i]), sustained_rate(r.echo_rounds[i])));
      out << "\n";
    }
    const double pe = peak_rate(r.echo_checks), po = peak_rate(r.otterd_checks);
    out << "  peak achieved rate: responder " << fmt("%.0f", pe) << "/s, otterd " << fmt("%.0f", po)
        << "/s, ratio " << fmt("%.2f", ratio_of(po, pe)) << "\n";
    // Every process shares the same cores, so what the others spend per check decides the rate
    // too: otterd's PostgreSQL, the broker, and the bench's own devices.
    out << "  cpu ms per 1000 checks, by process (server, broker, postgres, otter-bench):\n";
    for (int rate : rates) {
      auto cells = [](const check_point* p) {
        if (!p || p->answered == 0) return std::string(27, ' ') + "-";
        const double k = p->answered / 1000.0;
        return fmt("%6.0f", cpu_ms_per(p->server_cpu_s, k)) +
               fmt(" %6.0f", cpu_ms_per(p->broker_cpu_s, k)) +
               fmt(" %6.0f", cpu_ms_per(p->db_cpu_s, k)) +
               fmt(" %6.0f", cpu_ms_per(p->load_cpu_s, k));
      };
      char head[32];
      std::snprintf(head, sizeof head, "  %9d | ", rate);
      out << head << "responder " << cells(at_rate(r.echo_checks, rate)) << " | otterd "
          << cells(at_rate(r.otterd_checks, rate)) << "\n";
    }
  }

  if (!r.broker_chunks.empty() || !r.otterd_chunks.empty()) {
    out << "\nCHUNKS: MQTT chunk delivery, " << o.chunk_len << "-byte chunks, window " << o.window
        << ", QoS 1; MB = 10^6 bytes\n"
        << "  devices |   MiB | broker (no-op) MB/s | otterd MB/s | ratio | target | mark  "
           "| cpu ms/MB: no-op, otterd\n";
    for (std::size_t i = 0; i < std::max(r.broker_chunks.size(), r.otterd_chunks.size()); ++i) {
      const chunk_point* b = i < r.broker_chunks.size() ? &r.broker_chunks[i] : nullptr;
      const chunk_point* t = i < r.otterd_chunks.size() ? &r.otterd_chunks[i] : nullptr;
      const int devices = b ? b->devices : t->devices;
      const double mib = static_cast<double>((b ? b->bytes : t->bytes)) / 1048576.0;
      const double ratio =
          b && t && b->complete && t->complete ? ratio_of(t->mb_s, b->mb_s) : std::nan("");
      char line[200];
      std::snprintf(line, sizeof line,
                    "  %7d | %5.0f | %19s | %11s | %5s | %6.2f | %-5s | %.1f, %.1f\n", devices, mib,
                    b ? fmt(b->complete ? "%.1f" : "%.1f!", b->mb_s).c_str() : "-",
                    t ? fmt(t->complete ? "%.1f" : "%.1f!", t->mb_s).c_str() : "-",
                    fmt("%.2f", ratio).c_str(), kChunkTarget, mark(ratio, kChunkTarget).c_str(),
                    b ? cpu_ms_per(b->server_cpu_s, static_cast<double>(b->bytes) / 1e6) : 0.0,
                    t ? cpu_ms_per(t->server_cpu_s, static_cast<double>(t->bytes) / 1e6) : 0.0);
      out << line;
    }
    for (const auto* v : {&r.broker_chunks, &r.otterd_chunks})
      for (const auto& p : *v)
        if (!p.complete || p.refused > 0)
          out << "  ! " << (v == &r.broker_chunks ? "broker" : "otterd") << ", " << p.devices
              << " devices: " << (p.complete ? "complete" : "INCOMPLETE") << ", " << p.refused
              << " refused request(s)" << (p.problem.empty() ? "" : ": " + p.problem) << "\n";
  }

  if (!r.nginx_http.empty() || !r.otterd_http.empty()) {
    out << "\nHTTP: download of a " << r.image_bytes / 1048576 << " MiB image, " << o.http_seconds
        << " s per run, keep-alive; nginx " << o.nginx_workers << " worker(s), sendfile "
        << (o.nginx_sendfile ? "on" : "off") << "\n"
        << "  clients | nginx MB/s | otterd MB/s | ratio | target | mark  | cpu ms/MB: nginx, "
           "otterd\n";
    for (std::size_t i = 0; i < std::max(r.nginx_http.size(), r.otterd_http.size()); ++i) {
      const http_point* g = i < r.nginx_http.size() ? &r.nginx_http[i] : nullptr;
      const http_point* t = i < r.otterd_http.size() ? &r.otterd_http[i] : nullptr;
      const double ratio = g && t ? ratio_of(t->mb_s, g->mb_s) : std::nan("");
      char line[200];
      std::snprintf(line, sizeof line, "  %7d | %10s | %11s | %5s | %6.2f | %-5s | %.2f, %.2f\n",
                    g ? g->clients : t->clients, g ? fmt("%.0f", g->mb_s).c_str() : "-",
                    t ? fmt("%.0f", t->mb_s).c_str() : "-", fmt("%.2f", ratio).c_str(), kHttpTarget,
                    mark(ratio, kHttpTarget).c_str(),
                    g ? cpu_ms_per(g->server_cpu_s, static_cast<double>(g->bytes) / 1e6) : 0.0,
                    t ? cpu_ms_per(t->server_cpu_s, static_cast<double>(t->bytes) / 1e6) : 0.0);
      out << line;
    }
    for (const auto* v : {&r.nginx_http, &r.otterd_http})
      for (const auto& p : *v)
        if (p.errors > 0)
          out << "  ! " << (v == &r.nginx_http ? "nginx" : "otterd") << ", " << p.clients
              << " clients: " << p.errors << " failed download(s): " << p.first_error << "\n";
  }
  out << "\n";
}

nlohmann::json to_json(const results& r, const bench_options& o) {
  nlohmann::json j;
  j["machine"] = r.machine;
  j["versions"] = r.versions;
  j["otterd_env"] = r.otterd_env;
  j["load"] = nlohmann::json::object();
  for (const auto& [phase, load] : r.load) j["load"][phase] = load;
  auto checks = [](const std::vector<check_point>& v) {
    auto a = nlohmann::json::array();
    for (const auto& p : v)
      a.push_back({{"offered", p.offered},
                   {"sent", p.sent},
                   {"answered", p.answered},
                   {"errors", p.errors},
                   {"achieved", p.achieved},
                   {"p50_ms", p.p50_ms},
                   {"p99_ms", p.p99_ms},
                   {"max_ms", p.max_ms},
                   {"sustained", p.sustained},
                   {"runs", p.runs},
                   {"runs_sustained", p.runs_sustained},
                   {"server_cpu_s", p.server_cpu_s},
                   {"broker_cpu_s", p.broker_cpu_s},
                   {"db_cpu_s", p.db_cpu_s},
                   {"load_cpu_s", p.load_cpu_s}});
    return a;
  };
  auto rounds = [&](const std::vector<std::vector<check_point>>& v) {
    auto a = nlohmann::json::array();
    for (const auto& sweep : v) a.push_back(checks(sweep));
    return a;
  };
  auto chunks = [](const std::vector<chunk_point>& v) {
    auto a = nlohmann::json::array();
    for (const auto& p : v)
      a.push_back({{"devices", p.devices},
                   {"bytes", p.bytes},
                   {"seconds", p.seconds},
                   {"mb_s", p.mb_s},
                   {"requests", p.requests},
                   {"refused", p.refused},
                   {"complete", p.complete},
                   {"problem", p.problem},
                   {"server_cpu_s", p.server_cpu_s},
                   {"broker_cpu_s", p.broker_cpu_s}});
    return a;
  };
  auto http = [](const std::vector<http_point>& v) {
    auto a = nlohmann::json::array();
    for (const auto& p : v)
      a.push_back({{"clients", p.clients},
                   {"bytes", p.bytes},
                   {"seconds", p.seconds},
                   {"mb_s", p.mb_s},
                   {"downloads", p.downloads},
                   {"errors", p.errors},
                   {"first_error", p.first_error},
                   {"server_cpu_s", p.server_cpu_s}});
    return a;
  };
  j["checks"] = {
      {"devices", o.check_devices},
      {"seconds_per_rate", o.check_seconds},
      {"p99_bound_ms", o.p99_bound_ms},
      {"offer_bytes", r.offer_bytes},
      {"responder", checks(r.echo_checks)},
      {"otterd", checks(r.otterd_checks)},
      {"rounds", {{"responder", rounds(r.echo_rounds)}, {"otterd", rounds(r.otterd_rounds)}}},
      {"sustained",
       {{"responder", sustained_rate(r.echo_checks)}, {"otterd", sustained_rate(r.otterd_checks)}}},
      {"target", kCheckTarget}};
  j["chunks"] = {{"chunk_len", o.chunk_len},
                 {"window", o.window},
                 {"broker", chunks(r.broker_chunks)},
                 {"otterd", chunks(r.otterd_chunks)},
                 {"target", kChunkTarget}};
  j["http"] = {{"image_bytes", r.image_bytes},       {"nginx_workers", o.nginx_workers},
               {"nginx_sendfile", o.nginx_sendfile}, {"nginx", http(r.nginx_http)},
               {"otterd", http(r.otterd_http)},      {"target", kHttpTarget}};
  return j;
}

}  // namespace otter::bench
