#pragma once
// The fleet's numbers: counted from the devices' notes, shown live and in the final report.
#include <array>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sim/device.hpp"

namespace otter::sim {

struct fleet_stats {
  std::size_t devices = 0;
  std::size_t connected = 0;
  std::array<std::size_t, kPhaseCount> phases{};
  std::map<std::string, std::size_t> versions;
  std::uint64_t checks = 0;
  std::uint64_t updates = 0;                      // offers accepted
  std::uint64_t up_to_date = 0;                   // signed "no update" accepted
  std::map<std::string, std::uint64_t> statuses;  // sent, by state
  std::map<std::string, std::uint64_t> errors;    // by code
  std::vector<std::int64_t> download_ms;
  std::vector<std::int64_t> update_ms;
  // Whether the simulator keeps up: how long messages waited for a worker (the latest batch's
  // oldest, and the worst), and the most messages waiting at once.
  std::int64_t lag_ms = 0;
  std::int64_t lag_max_ms = 0;
  std::size_t queue_peak = 0;
  int workers = 0;

  void apply(const note& n);
  // Adds another worker's numbers; the duration samples only when `durations`.
  void merge(const fleet_stats& other, bool durations = true);
  // Devices whose version equals `version` by semver precedence (build metadata ignored).
  std::size_t running(const std::string& version) const;
};

struct percentiles {
  std::size_t count = 0;
  std::int64_t p50 = 0, p90 = 0, p99 = 0, max = 0;
};
// Nearest-rank percentiles.
percentiles percentiles_of(std::vector<std::int64_t> values);

struct run_info {
  double elapsed_s = 0;
  std::string goal;  // --until-version, or empty
  bool goal_reached = false;
  bool timed_out = false;
  bool interrupted = false;
  bool download = true;
  int exit_code = 0;
};

// One line, no newline: phases, versions, checks per second.
std::string live_line(const fleet_stats& s, double elapsed_s, double checks_per_s);
// Several lines for people.
std::string final_report(const fleet_stats& s, const run_info& info);
// The same as one JSON object.
nlohmann::ordered_json json_report(const fleet_stats& s, const run_info& info);

}  // namespace otter::sim
