// The NOTIFY otter_grants payloads by which instances share chunk grants: every grant arrives,
// no payload reaches PostgreSQL's 8000-byte limit, and what cannot be read is skipped.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "store/records.hpp"

namespace otter::store {
namespace {

grant_record grant(int i) {
  grant_record g;
  g.origin = "otterd-a";
  g.device = "esp32-" + std::to_string(i);
  g.sha256 = std::string(64, static_cast<char>('a' + i % 6));
  g.size = 1'500'000u + static_cast<std::uint64_t>(i);
  g.rollout = 17;
  g.at = time_point(std::chrono::milliseconds(1'795'000'000'123LL + i));
  return g;
}

TEST(store_grants, round_trip_in_payloads_under_the_notify_limit) {
  std::vector<grant_record> grants;
  for (int i = 0; i < 500; ++i) grants.push_back(grant(i));
  std::vector<const grant_record*> ptrs;
  for (const auto& g : grants) ptrs.push_back(&g);
  const auto payloads = grant_notifications(ptrs);
  ASSERT_GT(payloads.size(), 1u);
  std::vector<grant_record> back;
  for (const auto& p : payloads) {
    EXPECT_LT(p.size(), 8000u);
    for (auto& g : parse_grant_notification(p)) back.push_back(std::move(g));
  }
  ASSERT_EQ(back.size(), grants.size());
  for (std::size_t i = 0; i < grants.size(); ++i) {
    EXPECT_EQ(back[i].origin, grants[i].origin);
    EXPECT_EQ(back[i].device, grants[i].device);
    EXPECT_EQ(back[i].sha256, grants[i].sha256);
    EXPECT_EQ(back[i].size, grants[i].size);
    EXPECT_EQ(back[i].rollout, grants[i].rollout);
    EXPECT_EQ(back[i].at, grants[i].at);
  }
  EXPECT_TRUE(grant_notifications({}).empty());
}

TEST(store_grants, unreadable_payloads_and_records_are_skipped) {
  EXPECT_TRUE(parse_grant_notification("").empty());
  EXPECT_TRUE(parse_grant_notification("not json").empty());
  EXPECT_TRUE(parse_grant_notification(R"({"o":"a"})").empty());
  const auto some =
      parse_grant_notification(R"([{"o":"a","d":"dev","s":"ab","n":5,"r":1,"t":1000},)"
                               R"({"o":"a","d":"dev","s":"ab","n":-5,"r":1,"t":1000},)"
                               R"({"o":"a","d":7,"s":"ab","n":5,"r":1,"t":1000}, 3])");
  ASSERT_EQ(some.size(), 1u);
  EXPECT_EQ(some[0].device, "dev");
  EXPECT_EQ(some[0].size, 5u);
}

}  // namespace
}  // namespace otter::store
