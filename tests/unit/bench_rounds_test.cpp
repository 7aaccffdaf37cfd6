// The bench's rounds: how several sweeps of the check rates make one verdict per rate.
#include "rounds.hpp"

#include <gtest/gtest.h>

namespace otter::bench {
namespace {

check_point point(int rate, bool sustained, double p99, double achieved = 0) {
  check_point p;
  p.offered = rate;
  p.sent = p.answered = rate;
  p.achieved = achieved > 0 ? achieved : rate;
  p.p50_ms = p99 / 10;
  p.p99_ms = p99;
  p.max_ms = p99 * 2;
  p.sustained = sustained;
  p.runs_sustained = sustained ? 1 : 0;
  p.server_cpu_s = 0.5;
  return p;
}

TEST(bench_rounds, a_rate_is_sustained_when_most_rounds_sustained_it) {
  const auto c = combine_rounds({{point(3000, true, 20), point(3500, false, 120)},
                                 {point(3000, false, 80), point(3500, false, 90)},
                                 {point(3000, true, 30), point(3500, true, 40)}});
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].offered, 3000);
  EXPECT_TRUE(c[0].sustained);
  EXPECT_EQ(c[0].runs_sustained, 2);
  EXPECT_EQ(c[0].runs, 3);
  EXPECT_FALSE(c[1].sustained);
  EXPECT_EQ(c[1].runs_sustained, 1);
}

TEST(bench_rounds, figures_are_medians_and_sums) {
  const auto c = combine_rounds({{point(3000, true, 20, 2990)},
                                 {point(3000, false, 80, 2900)},
                                 {point(3000, true, 30, 3000)}});
  ASSERT_EQ(c.size(), 1u);
  EXPECT_DOUBLE_EQ(c[0].p99_ms, 30);
  EXPECT_DOUBLE_EQ(c[0].p50_ms, 3);
  EXPECT_DOUBLE_EQ(c[0].achieved, 2990);
  EXPECT_DOUBLE_EQ(c[0].max_ms, 160);
  EXPECT_EQ(c[0].answered, 9000);
  EXPECT_DOUBLE_EQ(c[0].server_cpu_s, 1.5);  // CPU per check stays a ratio of sums
}

TEST(bench_rounds, a_round_that_skipped_a_rate_counts_against_it) {
  // Rounds 2 and 3 stopped before 4000 (saturated): one sustained run of three is no majority.
  const auto c = combine_rounds({{point(3500, true, 10), point(4000, true, 20)},
                                 {point(3500, true, 10)},
                                 {point(3500, true, 10)}});
  ASSERT_EQ(c.size(), 2u);
  EXPECT_TRUE(c[0].sustained);
  EXPECT_FALSE(c[1].sustained);
  EXPECT_EQ(c[1].runs, 3);
  EXPECT_DOUBLE_EQ(c[1].p99_ms, 20);  // the median of the runs there are
}

TEST(bench_rounds, an_even_number_of_rounds_needs_more_than_half) {
  const auto c = combine_rounds({{point(3000, true, 20)}, {point(3000, false, 60)}});
  ASSERT_EQ(c.size(), 1u);
  EXPECT_FALSE(c[0].sustained);  // 1 of 2 is not a majority
  EXPECT_DOUBLE_EQ(c[0].p99_ms, 40);
}

TEST(bench_rounds, rates_come_out_in_rising_order) {
  const auto c =
      combine_rounds({{point(4000, true, 1), point(500, true, 1), point(2250, true, 1)}});
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].offered, 500);
  EXPECT_EQ(c[1].offered, 2250);
  EXPECT_EQ(c[2].offered, 4000);
}

}  // namespace
}  // namespace otter::bench
