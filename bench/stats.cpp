#include "stats.hpp"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

namespace otter::bench {

double percentile(std::vector<double>& values, double p) {
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  const auto n = values.size();
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(n)));
  rank = std::clamp<std::size_t>(rank, 1, n);
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(rank - 1),
                   values.end());
  return values[rank - 1];
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  if (!(in >> a >> b >> c)) return {};
  return a + " " + b + " " + c;
}

std::string machine_summary() {
  std::string cpu;
  std::ifstream info("/proc/cpuinfo");
  for (std::string line; std::getline(info, line);) {
    if (line.starts_with("model name")) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  double mem_gib = 0;
  std::ifstream meminfo("/proc/meminfo");
  for (std::string line; std::getline(meminfo, line);) {
    if (line.starts_with("MemTotal:")) {
      std::istringstream ss(line.substr(9));
      double kib = 0;
      ss >> kib;
      mem_gib = kib / 1024 / 1024;
      break;
    }
  }
  utsname u{};
  ::uname(&u);
  std::ostringstream out;
  out.precision(1);
  out << (cpu.empty() ? "unknown CPU" : cpu) << ", " << ::sysconf(_SC_NPROCESSORS_ONLN)
      << " cores, " << std::fixed << mem_gib << " GiB, Linux " << u.release;
  return out.str();
}

}  // namespace otter::bench
