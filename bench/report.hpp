#pragma once
// The bench's results and how they are shown: one table per measurement, otterd beside its
// reference, with the ratio and a PASS/BELOW mark against the target of issue #3.
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "checks.hpp"
#include "chunks.hpp"
#include "http_load.hpp"
#include "options.hpp"

namespace otter::bench {

inline constexpr double kCheckTarget = 0.8;  // of the no-op responder's rate
inline constexpr double kChunkTarget = 0.7;  // of the broker's rate
inline constexpr double kHttpTarget = 0.8;   // of nginx

struct results {
  std::string machine;
  std::string versions;    // of the broker, database and nginx, as far as known
  std::string otterd_env;  // --otterd-env settings, "K=V K=V"; empty: the defaults
  std::vector<check_point> echo_checks, otterd_checks;  // the rounds combined (rounds.hpp)
  std::vector<std::vector<check_point>> echo_rounds, otterd_rounds;  // one sweep per round
  std::vector<chunk_point> broker_chunks, otterd_chunks;
  std::vector<http_point> nginx_http, otterd_http;
  std::vector<std::pair<std::string, std::string>> load;  // phase, load average when it began
  std::size_t offer_bytes = 0;
  std::uint64_t image_bytes = 0;
};

// The highest offered rate that was sustained (0 if none).
int sustained_rate(const std::vector<check_point>& points);
// The highest achieved rate of any run.
double peak_rate(const std::vector<check_point>& points);

void print_report(std::ostream& out, const results& r, const bench_options& o);
nlohmann::json to_json(const results& r, const bench_options& o);

}  // namespace otter::bench
