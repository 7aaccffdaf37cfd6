#include "rounds.hpp"

#include <algorithm>
#include <map>

namespace otter::bench {
namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

std::vector<check_point> combine_rounds(const std::vector<std::vector<check_point>>& rounds) {
  std::map<int, std::vector<const check_point*>> by_rate;
  for (const auto& sweep : rounds)
    for (const auto& p : sweep) by_rate[p.offered].push_back(&p);
  std::vector<check_point> out;
  for (const auto& [rate, points] : by_rate) {
    check_point c;
    c.offered = rate;
    std::vector<double> achieved, p50, p99;
    for (const auto* p : points) {
      c.sent += p->sent;
      c.answered += p->answered;
      c.errors += p->errors;
      c.max_ms = std::max(c.max_ms, p->max_ms);
      c.server_cpu_s += p->server_cpu_s;
      c.broker_cpu_s += p->broker_cpu_s;
      c.db_cpu_s += p->db_cpu_s;
      c.load_cpu_s += p->load_cpu_s;
      if (p->sustained) ++c.runs_sustained;
      achieved.push_back(p->achieved);
      p50.push_back(p->p50_ms);
      p99.push_back(p->p99_ms);
    }
    c.runs = static_cast<int>(rounds.size());
    c.achieved = median(achieved);
    c.p50_ms = median(p50);
    c.p99_ms = median(p99);
    c.sustained = 2 * c.runs_sustained > c.runs;
    out.push_back(c);
  }
  return out;
}

}  // namespace otter::bench
