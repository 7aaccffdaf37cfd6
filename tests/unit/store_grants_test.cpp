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
  g.version = "1.2." + std::to_string(i);
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
    EXPECT_EQ(back[i].version, grants[i].version);
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

// NOTIFY otter_devices: what instances sharing the device topics learn of devices.
TEST(store_device_notes, round_trip_in_payloads_under_the_notify_limit) {
  std::vector<device_note> notes;
  for (int i = 0; i < 300; ++i) {
    device_note n;
    n.origin = "otterd-a";
    n.device = "esp32-" + std::to_string(i);
    n.version = "1.0." + std::to_string(i);
    n.at = time_point(std::chrono::milliseconds(1'795'000'000'000LL + i));
    if (i % 2) {
      n.kind = device_note::kind_t::status;
      n.state = "success";
      if (i % 3) n.rollout = i;
    } else {
      n.model = "esp32-devkitc";
      if (i % 4) n.attrs = nlohmann::json{{"site", "warehouse-" + std::to_string(i)}};
    }
    notes.push_back(std::move(n));
  }
  std::vector<const device_note*> ptrs;
  for (const auto& n : notes) ptrs.push_back(&n);
  const auto payloads = device_notifications(ptrs);
  ASSERT_GT(payloads.size(), 1u);
  std::vector<device_note> back;
  for (const auto& p : payloads) {
    EXPECT_LT(p.size(), 8000u);
    for (auto& n : parse_device_notification(p)) back.push_back(std::move(n));
  }
  ASSERT_EQ(back.size(), notes.size());
  for (std::size_t i = 0; i < notes.size(); ++i) {
    EXPECT_EQ(back[i].origin, notes[i].origin);
    EXPECT_EQ(back[i].device, notes[i].device);
    EXPECT_EQ(back[i].kind, notes[i].kind);
    EXPECT_EQ(back[i].model, notes[i].model);
    EXPECT_EQ(back[i].version, notes[i].version);
    EXPECT_EQ(back[i].attrs, notes[i].attrs);
    EXPECT_EQ(back[i].rollout, notes[i].rollout);
    EXPECT_EQ(back[i].state, notes[i].state);
    EXPECT_EQ(back[i].at, notes[i].at);
  }
}

// A note PostgreSQL would refuse (> 8000 bytes) would fail the whole batch: its attributes
// are left out, saying so (the receivers read them from the row), its model and version go.
TEST(store_device_notes, a_note_too_long_to_notify_goes_without_attributes_and_junk_is_skipped) {
  device_note big;
  big.origin = "a";
  big.device = "d";
  big.model = "m";
  big.version = "1.0.0";
  big.attrs = nlohmann::json::object();
  for (int i = 0; i < 16; ++i) (*big.attrs)["k" + std::to_string(i)] = std::string(128, '\x01');
  device_note small = big;
  small.attrs.reset();
  const auto payloads = device_notifications({&big, &small});
  ASSERT_EQ(payloads.size(), 1u);
  const auto back = parse_device_notification(payloads[0]);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_FALSE(back[0].attrs);
  EXPECT_TRUE(back[0].attrs_left_out);
  EXPECT_FALSE(back[1].attrs_left_out);
  EXPECT_EQ(back[0].model, "m");
  EXPECT_EQ(back[0].version, "1.0.0");
  EXPECT_TRUE(parse_device_notification(
                  "[1,{\"o\":\"a\"},{\"o\":\"a\",\"d\":\"d\",\"k\":\"x\",\"v\":\"1\"}]")
                  .empty());
}

}  // namespace
}  // namespace otter::store
