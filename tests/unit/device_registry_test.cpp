// The in-memory device registry: which checks need their devices row written.
#include "service/device_registry.hpp"

#include <gtest/gtest.h>

#include <chrono>

namespace otter::service {
namespace {

using namespace std::chrono_literals;

protocol::check_msg check(std::string model, std::string version,
                          std::optional<protocol::attr_map> attrs = std::nullopt) {
  nlohmann::json j = {{"req", "r1"},
                      {"model", model},
                      {"version", version},
                      {"nonce", "0123456789abcdef0123456789abcdef"}};
  if (attrs) j["attrs"] = *attrs;
  auto m = protocol::parse_check(j);
  EXPECT_TRUE(m) << j.dump();
  return *m;
}

class device_registry_record : public ::testing::Test {
 protected:
  device_registry reg_;
  device_registry::time_point t0_ = std::chrono::system_clock::from_time_t(1'800'000'000);

  // A check at `at`, recorded as the handler does when the row was queued.
  bool checks_in(const protocol::check_msg& m, device_registry::time_point at) {
    const bool write = reg_.on_check("dev-1", m, at).record_device;
    if (write) reg_.device_recorded("dev-1", at);
    return write;
  }
};

TEST_F(device_registry_record, first_check_is_written) {
  EXPECT_TRUE(checks_in(check("esp32", "1.0.0"), t0_));
}

TEST_F(device_registry_record, unchanged_device_is_written_once_per_resolution) {
  ASSERT_TRUE(checks_in(check("esp32", "1.0.0"), t0_));
  EXPECT_FALSE(checks_in(check("esp32", "1.0.0"), t0_ + 1s));
  EXPECT_FALSE(checks_in(check("esp32", "1.0.0"), t0_ + device_registry::kSeenResolution - 1s));
  EXPECT_TRUE(checks_in(check("esp32", "1.0.0"), t0_ + device_registry::kSeenResolution));
  EXPECT_FALSE(checks_in(check("esp32", "1.0.0"), t0_ + device_registry::kSeenResolution + 1s));
}

TEST_F(device_registry_record, any_change_is_written_at_once) {
  ASSERT_TRUE(checks_in(check("esp32", "1.0.0"), t0_));
  EXPECT_TRUE(checks_in(check("esp32", "1.0.1"), t0_ + 1s)) << "new version";
  EXPECT_TRUE(checks_in(check("esp32-s3", "1.0.1"), t0_ + 2s)) << "new model";
  EXPECT_TRUE(checks_in(check("esp32-s3", "1.0.1", protocol::attr_map{{"site", "a"}}), t0_ + 3s))
      << "new attributes";
  EXPECT_FALSE(checks_in(check("esp32-s3", "1.0.1", protocol::attr_map{{"site", "a"}}), t0_ + 4s))
      << "same attributes again";
  EXPECT_FALSE(checks_in(check("esp32-s3", "1.0.1"), t0_ + 5s)) << "attributes not sent: kept";
  EXPECT_TRUE(checks_in(check("esp32-s3", "1.0.1", protocol::attr_map{{"site", "b"}}), t0_ + 6s));
}

TEST_F(device_registry_record, unqueued_row_is_asked_for_again) {
  // The handler calls device_recorded only once the records were queued: when the writer's
  // queue was full, the next check must write the row.
  ASSERT_TRUE(reg_.on_check("dev-1", check("esp32", "1.0.0"), t0_).record_device);
  EXPECT_TRUE(reg_.on_check("dev-1", check("esp32", "1.0.0"), t0_ + 1s).record_device);
}

TEST_F(device_registry_record, change_whose_row_was_not_queued_stays_pending) {
  ASSERT_TRUE(checks_in(check("esp32", "1.0.0"), t0_));
  // 1.0.1 arrives but its records were refused (queue full): no device_recorded.
  ASSERT_TRUE(reg_.on_check("dev-1", check("esp32", "1.0.1"), t0_ + 1s).record_device);
  EXPECT_TRUE(checks_in(check("esp32", "1.0.1"), t0_ + 2s)) << "the new version is still unstored";
  EXPECT_FALSE(checks_in(check("esp32", "1.0.1"), t0_ + 3s));
}

TEST_F(device_registry_record, loaded_device_is_written_on_its_first_check) {
  store::device_state d;
  d.id = "dev-1";
  d.model = "esp32";
  d.version = "1.0.0";
  d.attrs = nlohmann::json::object();
  reg_.load({d});
  EXPECT_TRUE(checks_in(check("esp32", "1.0.0"), t0_)) << "last_seen was never stored by us";
  EXPECT_FALSE(checks_in(check("esp32", "1.0.0"), t0_ + 1s));
}

TEST_F(device_registry_record, clock_going_back_writes) {
  ASSERT_TRUE(checks_in(check("esp32", "1.0.0"), t0_));
  EXPECT_TRUE(checks_in(check("esp32", "1.0.0"), t0_ - 10s));
}

}  // namespace
}  // namespace otter::service

namespace otter::service {
namespace {

protocol::status_msg success(const std::string& version, std::int64_t rollout) {
  auto m = protocol::parse_status({{"req", "s1"},
                                   {"version", version},
                                   {"state", "success"},
                                   {"rollout", std::to_string(rollout)}});
  EXPECT_TRUE(m);
  return *m;
}

// A success contradicted by an older version is reported until the handler says it recorded
// the rolled_back report: a check answered `unavailable` (nothing recorded) finds it again.
TEST(device_registry_rollback, reported_until_recorded_then_once_only) {
  device_registry reg;
  const auto t0 = std::chrono::system_clock::from_time_t(1'800'000'000);
  reg.on_check("dev-1", check("esp32", "1.0.0"), t0);
  reg.on_offer("dev-1", 7, "1.1.0", t0);
  reg.on_status("dev-1", 7, success("1.1.0", 7), t0);
  EXPECT_TRUE(reg.on_check("dev-1", check("esp32", "1.1.0"), t0).rolled_back.empty());

  auto first = reg.on_check("dev-1", check("esp32", "1.0.0"), t0);
  ASSERT_EQ(first.rolled_back.size(), 1u);
  EXPECT_EQ(first.rolled_back[0].rollout, 7);
  EXPECT_EQ(first.rolled_back[0].version, "1.1.0");
  // Not recorded (the check was refused): the next check derives it again.
  auto again = reg.on_check("dev-1", check("esp32", "1.0.0"), t0);
  ASSERT_EQ(again.rolled_back.size(), 1u);
  reg.rollbacks_recorded("dev-1", again.rolled_back);
  EXPECT_TRUE(reg.on_check("dev-1", check("esp32", "1.0.0"), t0).rolled_back.empty());
}

// Another instance's note of a check that reported these facts at `at`.
store::device_note check_note(const std::string& version, const std::string& site,
                              device_registry::time_point at) {
  store::device_note n;
  n.origin = "b";
  n.device = "dev-1";
  n.model = "esp32";
  n.version = version;
  n.attrs = nlohmann::json{{"site", site}};
  n.at = at;
  return n;
}

// Another instance's note of a report of `state` for rollout 7's release 1.1.0 at `at`.
store::device_note status_note(const std::string& state, device_registry::time_point at) {
  store::device_note n;
  n.origin = "b";
  n.device = "dev-1";
  n.kind = store::device_note::kind_t::status;
  n.version = "1.1.0";
  n.rollout = 7;
  n.state = state;
  n.at = at;
  return n;
}

// Instances sharing the device topics tell each other what they learned (store::device_note):
// the attributes a group rollout matches, a success a later check contradicts, a rollback
// another instance already reported.
TEST(device_registry_shared, notes_from_another_instance_are_applied) {
  device_registry reg;
  const auto t0 = std::chrono::system_clock::from_time_t(1'800'000'000);
  reg.apply(check_note("1.0.0", "x", t0));
  EXPECT_EQ(reg.model_of("dev-1"), "esp32");
  auto seen = reg.on_check("dev-1", check("esp32", "1.0.0"), t0 + 1s);
  EXPECT_EQ(seen.facts.attrs, (protocol::attr_map{{"site", "x"}}))
      << "attributes sent to the other instance";
  EXPECT_FALSE(seen.changed);

  // A success reported to the other instance: a check with the older version here derives
  // the rollback; once the other instance reported a rollback, it is not derived again.
  reg.apply(status_note("success", t0 + 2s));
  ASSERT_EQ(reg.on_check("dev-1", check("esp32", "1.0.0"), t0 + 3s).rolled_back.size(), 1u);
  reg.apply(status_note("rolled_back", t0 + 3s));
  EXPECT_TRUE(reg.on_check("dev-1", check("esp32", "1.0.0"), t0 + 4s).rolled_back.empty());
  EXPECT_TRUE(reg.was_offered("dev-1", 7));
}

// A lagging writer delivers old notes: what this instance heard later stays.
TEST(device_registry_shared, an_older_note_changes_nothing) {
  device_registry reg;
  const auto t0 = std::chrono::system_clock::from_time_t(1'800'000'000);
  reg.on_check("dev-1", check("esp32", "1.0.0", protocol::attr_map{{"site", "y"}}), t0);
  reg.on_status("dev-1", 7, success("1.1.0", 7), t0);
  reg.apply(check_note("0.9.0", "x", t0 - 30s));
  reg.apply(status_note("downloading", t0 - 30s));
  auto seen = reg.on_check("dev-1", check("esp32", "1.0.0"), t0 + 1s);
  EXPECT_EQ(seen.facts.attrs, (protocol::attr_map{{"site", "y"}}));
  EXPECT_EQ(seen.rolled_back.size(), 1u) << "the success stays: the downloading note is older";
}

TEST(device_registry_shared, a_check_that_changes_nothing_is_not_announced) {
  device_registry reg;
  const auto t0 = std::chrono::system_clock::from_time_t(1'800'000'000);
  EXPECT_TRUE(reg.on_check("dev-1", check("esp32", "1.0.0"), t0).changed) << "new here";
  EXPECT_FALSE(reg.on_check("dev-1", check("esp32", "1.0.0"), t0).changed);
  EXPECT_TRUE(reg.on_check("dev-1", check("esp32", "1.0.1"), t0).changed);
  EXPECT_TRUE(
      reg.on_check("dev-1", check("esp32", "1.0.1", protocol::attr_map{{"a", "b"}}), t0).changed);
}

// After the listener (re)connects, what other instances recorded meanwhile is read back: the
// stored state (with its times) wins for devices this instance did not touch since the mark
// (its own changes were written before the read); local facts win for the others, and for a
// device whose check is not queued yet; they only gain links.
TEST(device_registry_shared, a_refresh_takes_stored_states_except_for_devices_changed_since) {
  device_registry reg;
  const auto t0 = std::chrono::system_clock::from_time_t(1'800'000'000);
  // As the handler does: on_check, then check_done once the records are queued.
  const auto checks_in = [&](const std::string& id, const std::string& site,
                             device_registry::time_point at) {
    reg.on_check(id, check("esp32", "1.0.0", protocol::attr_map{{"site", site}}), at);
    reg.check_done(id);
  };
  checks_in("dev-1", "mine", t0);
  reg.on_offer("dev-1", 7, "1.1.0", t0);
  checks_in("dev-3", "mine", t0);
  reg.on_check("dev-4", check("esp32", "1.0.0", protocol::attr_map{{"site", "in-flight"}}), t0);
  const auto mark = reg.mark();
  checks_in("dev-3", "later", t0 + 1s);
  const auto stored = [&](const std::string& id) {
    store::device_state s;
    s.id = id;
    s.model = "esp32";
    s.version = "1.0.0";
    s.attrs = {{"site", "stored"}};
    s.seen = t0 + 5s;
    s.rollouts = {{7, "1.1.0", "success", t0 + 5s}, {8, "1.2.0", "offered", t0}};
    return s;
  };
  reg.refresh({stored("dev-1"), stored("dev-2"), stored("dev-3"), stored("dev-4")}, mark);
  reg.check_done("dev-4");

  // The stored success came with its time: an older note does not take it back.
  reg.apply(status_note("downloading", t0 + 4s));
  auto one = reg.on_check("dev-1", check("esp32", "1.0.0"), t0 + 6s);
  EXPECT_EQ(one.facts.attrs, (protocol::attr_map{{"site", "stored"}}));
  EXPECT_EQ(one.rolled_back.size(), 1u) << "the stored success of rollout 7 was taken";
  EXPECT_TRUE(reg.was_offered("dev-1", 8));
  EXPECT_EQ(reg.on_check("dev-2", check("esp32", "1.0.0"), t0 + 6s).facts.attrs,
            (protocol::attr_map{{"site", "stored"}}));
  auto three = reg.on_check("dev-3", check("esp32", "1.0.0"), t0 + 6s);
  EXPECT_EQ(three.facts.attrs, (protocol::attr_map{{"site", "later"}}));
  EXPECT_TRUE(reg.was_offered("dev-3", 7));
  EXPECT_EQ(reg.on_check("dev-4", check("esp32", "1.0.0"), t0 + 6s).facts.attrs,
            (protocol::attr_map{{"site", "in-flight"}}));
}

}  // namespace
}  // namespace otter::service
