// Status reports held for another instance's offer (shared device topics): a device's reports
// leave together and in order, the wait is bounded, and one device cannot fill the list.
#include "service/held_statuses.hpp"

#include <gtest/gtest.h>

namespace otter::service {
namespace {

using namespace std::chrono_literals;

protocol::status_msg status(const std::string& req) {
  auto m = protocol::parse_status({{"req", req}, {"version", "1.1.0"}, {"state", "downloading"}});
  EXPECT_TRUE(m);
  return *m;
}

TEST(held_statuses, a_devices_reports_leave_together_in_order) {
  held_statuses h(1000ms, 10, 3);
  const auto t0 = std::chrono::steady_clock::time_point{} + 1h;
  const auto at = std::chrono::system_clock::from_time_t(1'800'000'000);
  EXPECT_FALSE(h.holding("d1"));
  ASSERT_TRUE(h.hold("d1", status("s-1"), at, t0));
  ASSERT_TRUE(h.hold("d1", status("s-2"), at + 1s, t0 + 900ms));
  ASSERT_TRUE(h.hold("d2", status("s-9"), at, t0 + 500ms));
  EXPECT_TRUE(h.holding("d1"));
  EXPECT_EQ(h.size(), 3u);
  EXPECT_TRUE(h.claim_due(t0 + 999ms).empty());
  // The second report waits no longer than the first; a release is claimed once.
  EXPECT_EQ(h.claim_due(t0 + 1000ms), std::vector<std::string>{"d1"});
  EXPECT_TRUE(h.claim_due(t0 + 1100ms).empty());
  EXPECT_FALSE(h.claim_release("d1"));
  EXPECT_TRUE(h.claim_release("d2"));
  EXPECT_FALSE(h.claim_release("d2"));
  EXPECT_FALSE(h.claim_release("nobody"));
  auto out = h.take("d1");
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].msg.req, "s-1");
  EXPECT_EQ(out[1].msg.req, "s-2");
  EXPECT_EQ(out[1].at, at + 1s);
  EXPECT_FALSE(h.holding("d1"));
  EXPECT_TRUE(h.take("d1").empty());
  EXPECT_EQ(h.size(), 1u);
  EXPECT_EQ(h.devices(), std::vector<std::string>{"d2"});
}

TEST(held_statuses, full_device_or_list_refuses) {
  held_statuses h(1000ms, 2, 2);
  const auto t0 = std::chrono::steady_clock::time_point{} + 1h;
  const auto at = std::chrono::system_clock::from_time_t(1'800'000'000);
  ASSERT_TRUE(h.hold("d1", status("a"), at, t0));
  ASSERT_TRUE(h.hold("d1", status("b"), at, t0));
  EXPECT_FALSE(h.hold("d1", status("c"), at, t0)) << "the device's share is full";
  ASSERT_TRUE(h.hold("d2", status("a"), at, t0));
  EXPECT_FALSE(h.hold("d3", status("a"), at, t0)) << "the list is full";
  h.take("d2");
  EXPECT_TRUE(h.hold("d3", status("a"), at, t0));
}

}  // namespace
}  // namespace otter::service
