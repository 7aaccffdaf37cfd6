#pragma once
// The check phase runs in rounds, responder and otterd alternating, because on a small shared
// machine a single few-second run of a rate passes or fails its p99 bound by luck: a hiccup of
// 100 ms anywhere on the box is enough. A rate counts as sustained when most rounds sustained it.
#include <vector>

#include "check_point.hpp"

namespace otter::bench {

// One point per offered rate, in rising order, from the rounds' sweeps. achieved, p50 and p99
// are medians over the rounds that ran the rate, max_ms the maximum; counts and CPU seconds are
// sums (so CPU per check stays a ratio of sums). sustained: more than half of *all* rounds
// sustained it (a round that skipped the rate, past saturation, counts against it).
std::vector<check_point> combine_rounds(const std::vector<std::vector<check_point>>& rounds);

}  // namespace otter::bench
