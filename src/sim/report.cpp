#include "sim/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "protocol/semver.hpp"

namespace otter::sim {
namespace {

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string seconds(std::int64_t ms) {
  return fixed(static_cast<double>(ms) / 1000.0, 2) + "s";
}

std::string phases_text(const fleet_stats& s) {
  std::string out;
  for (std::size_t i = 0; i < kPhaseCount; ++i) {
    if (s.phases[i] == 0) continue;
    if (!out.empty()) out += ' ';
    out += std::string(to_string(static_cast<phase>(i))) + ' ' + std::to_string(s.phases[i]);
  }
  return out.empty() ? "-" : out;
}

template <class Map>
std::string pairs_text(const Map& m, const char* sep) {
  std::string out;
  for (const auto& [k, v] : m) {
    if (v == 0) continue;
    if (!out.empty()) out += sep;
    out += k + ' ' + std::to_string(v);
  }
  return out.empty() ? "-" : out;
}

// Versions in semver order, not text order (1.10.0 after 1.9.0).
std::vector<std::pair<std::string, std::size_t>> sorted_versions(const fleet_stats& s) {
  std::vector<std::pair<std::string, std::size_t>> v;
  for (const auto& [k, n] : s.versions)
    if (n > 0) v.emplace_back(k, n);
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) {
    const auto x = protocol::parse_semver(a.first);
    const auto y = protocol::parse_semver(b.first);
    if (x && y && *x != *y) return *x < *y;
    return a.first < b.first;
  });
  return v;
}

std::string percentiles_text(const percentiles& p) {
  if (p.count == 0) return "-";
  return "p50 " + seconds(p.p50) + "  p90 " + seconds(p.p90) + "  p99 " + seconds(p.p99) +
         "  max " + seconds(p.max) + "  (" + std::to_string(p.count) + ")";
}

nlohmann::ordered_json percentiles_json(const percentiles& p) {
  return {{"count", p.count}, {"p50", p.p50}, {"p90", p.p90}, {"p99", p.p99}, {"max", p.max}};
}

}  // namespace

void fleet_stats::apply(const note& n) {
  switch (n.what) {
    case note::kind::check:
      ++checks;
      break;
    case note::kind::update:
      ++updates;
      break;
    case note::kind::up_to_date:
      ++up_to_date;
      break;
    case note::kind::status:
      ++statuses[n.code];
      break;
    case note::kind::error:
      ++errors[n.code];
      break;
    case note::kind::downloaded:
      download_ms.push_back(n.took.count());
      break;
    case note::kind::updated:
      update_ms.push_back(n.took.count());
      break;
  }
}

void fleet_stats::merge(const fleet_stats& o, bool durations) {
  devices += o.devices;
  connected += o.connected;
  for (std::size_t i = 0; i < kPhaseCount; ++i) phases[i] += o.phases[i];
  for (const auto& [k, v] : o.versions) versions[k] += v;
  checks += o.checks;
  updates += o.updates;
  up_to_date += o.up_to_date;
  for (const auto& [k, v] : o.statuses) statuses[k] += v;
  for (const auto& [k, v] : o.errors) errors[k] += v;
  lag_ms = std::max(lag_ms, o.lag_ms);
  lag_max_ms = std::max(lag_max_ms, o.lag_max_ms);
  queue_peak = std::max(queue_peak, o.queue_peak);
  workers += o.workers;
  if (!durations) return;
  download_ms.insert(download_ms.end(), o.download_ms.begin(), o.download_ms.end());
  update_ms.insert(update_ms.end(), o.update_ms.begin(), o.update_ms.end());
}

std::size_t fleet_stats::running(const std::string& version) const {
  const auto want = protocol::parse_semver(version);
  std::size_t n = 0;
  for (const auto& [k, v] : versions) {
    const auto have = protocol::parse_semver(k);
    if (want && have ? *have == *want : k == version) n += v;
  }
  return n;
}

percentiles percentiles_of(std::vector<std::int64_t> values) {
  percentiles p;
  p.count = values.size();
  if (values.empty()) return p;
  std::sort(values.begin(), values.end());
  const auto rank = [&](double q) {
    const auto r = static_cast<std::size_t>(std::ceil(q * static_cast<double>(values.size())));
    return values[std::clamp<std::size_t>(r, 1, values.size()) - 1];
  };
  p.p50 = rank(0.50);
  p.p90 = rank(0.90);
  p.p99 = rank(0.99);
  p.max = values.back();
  return p;
}

std::string live_line(const fleet_stats& s, double elapsed_s, double checks_per_s) {
  std::string line = "[" + fixed(elapsed_s, 0) + "s] " + phases_text(s) + " | ";
  std::string versions;
  for (const auto& [v, n] : sorted_versions(s)) {
    if (!versions.empty()) versions += ' ';
    versions += v + '=' + std::to_string(n);
  }
  line += versions.empty() ? "-" : versions;
  line += " | " + fixed(checks_per_s, 1) + " checks/s";
  const auto ok = s.statuses.count("success") ? s.statuses.at("success") : 0;
  const auto failed = s.statuses.count("failed") ? s.statuses.at("failed") : 0;
  const auto rolled = s.statuses.count("rolled_back") ? s.statuses.at("rolled_back") : 0;
  line += " | updated " + std::to_string(ok) + " failed " + std::to_string(failed) +
          " rolled_back " + std::to_string(rolled);
  std::uint64_t errors = 0;
  for (const auto& [k, v] : s.errors) errors += v;
  if (errors) line += " | errors " + std::to_string(errors);
  if (s.connected < s.devices) line += " | offline " + std::to_string(s.devices - s.connected);
  // Past this, the simulator itself is a bottleneck and its timings say little of the service.
  if (s.lag_ms >= 500) line += " | sim lag " + seconds(s.lag_ms);
  return line;
}

std::string final_report(const fleet_stats& s, const run_info& info) {
  std::string out =
      "otter-sim: " + std::to_string(s.devices) + " devices, " + fixed(info.elapsed_s, 1) + " s";
  if (!info.goal.empty()) {
    out += info.goal_reached
               ? ", every device runs " + info.goal
               : ", goal " + info.goal + " NOT reached (" + std::to_string(s.running(info.goal)) +
                     "/" + std::to_string(s.devices) + " run it)";
  }
  if (info.timed_out) out += ", stopped at --timeout";
  if (info.interrupted) out += ", interrupted";
  if (!info.download) out += " [--no-download: nothing fetched]";
  out += "\n";
  out += "  states:    " + phases_text(s) + "\n";
  std::string versions;
  for (const auto& [v, n] : sorted_versions(s)) {
    if (!versions.empty()) versions += ", ";
    versions += v + ' ' + std::to_string(n);
  }
  out += "  versions:  " + (versions.empty() ? std::string("-") : versions) + "\n";
  out += "  checks:    " + std::to_string(s.checks) + " (" +
         fixed(info.elapsed_s > 0 ? static_cast<double>(s.checks) / info.elapsed_s : 0, 1) +
         "/s); offers taken " + std::to_string(s.updates) + ", up to date " +
         std::to_string(s.up_to_date) + "\n";
  out += "  statuses:  " + pairs_text(s.statuses, ", ") + "\n";
  out += std::string(info.download ? "  download:  " : "  download:  (pretend) ") +
         percentiles_text(percentiles_of(s.download_ms)) + "\n";
  out += "  update:    " + percentiles_text(percentiles_of(s.update_ms)) +
         "  (offer accepted -> success after reboot)\n";
  out += "  errors:    " + pairs_text(s.errors, ", ") + "\n";
  if (s.connected < s.devices)
    out += "  offline:   " + std::to_string(s.devices - s.connected) + " devices at the end\n";
  out += "  simulator: " + std::to_string(s.workers) + " workers; messages waited for them " +
         seconds(s.lag_max_ms) + " at most, " + std::to_string(s.queue_peak) + " queued at most" +
         (s.lag_max_ms >= 1000 ? " (it fell behind: timings include its own delay)" : "") + "\n";
  return out;
}

nlohmann::ordered_json json_report(const fleet_stats& s, const run_info& info) {
  nlohmann::ordered_json j;
  j["devices"] = s.devices;
  j["elapsed_s"] = std::round(info.elapsed_s * 10) / 10;
  j["goal"] = info.goal.empty() ? nlohmann::ordered_json(nullptr)
                                : nlohmann::ordered_json{{"version", info.goal},
                                                         {"reached", info.goal_reached},
                                                         {"running", s.running(info.goal)}};
  j["timed_out"] = info.timed_out;
  j["interrupted"] = info.interrupted;
  j["download"] = info.download;
  j["connected"] = s.connected;
  auto& states = j["states"] = nlohmann::ordered_json::object();
  for (std::size_t i = 0; i < kPhaseCount; ++i)
    states[std::string(to_string(static_cast<phase>(i)))] = s.phases[i];
  auto& versions = j["versions"] = nlohmann::ordered_json::object();
  for (const auto& [v, n] : sorted_versions(s)) versions[v] = n;
  j["checks"] = s.checks;
  j["offers_taken"] = s.updates;
  j["up_to_date"] = s.up_to_date;
  j["statuses"] = s.statuses;
  j["download_ms"] = percentiles_json(percentiles_of(s.download_ms));
  j["update_ms"] = percentiles_json(percentiles_of(s.update_ms));
  j["errors"] = s.errors;
  j["simulator"] = {
      {"workers", s.workers}, {"lag_max_ms", s.lag_max_ms}, {"queue_peak", s.queue_peak}};
  j["exit"] = info.exit_code;
  return j;
}

}  // namespace otter::sim
