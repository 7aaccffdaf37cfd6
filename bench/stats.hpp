#pragma once
// Small statistics for the bench: latency percentiles and the machine's load.
#include <string>
#include <vector>

namespace otter::bench {

// The p-th percentile (0..100) of `values` by the nearest-rank method; sorts in place. NaN for
// an empty vector.
double percentile(std::vector<double>& values, double p);

// "0.52 0.61 0.70" from /proc/loadavg (empty if unreadable): the bench shares a small machine,
// so every figure is printed with the load it was taken under.
std::string load_average();

// "AMD EPYC, 2 cores, 23.5 GiB" from /proc; for the report header.
std::string machine_summary();

}  // namespace otter::bench
