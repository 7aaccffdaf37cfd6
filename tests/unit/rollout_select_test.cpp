// Rollout selection, case by case against PROTOCOL.md "Rollout selection".
#include <gtest/gtest.h>

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "rollout/bucket.hpp"
#include "rollout/catalog.hpp"

namespace otter::rollout {
namespace {

using protocol::rollout_state;
using protocol::target;

protocol::semver ver(const std::string& text) {
  auto v = protocol::parse_semver(text);
  if (!v) throw std::invalid_argument("bad version in test: " + text);
  return *v;
}

struct rel_spec {
  std::int64_t id;
  std::string version;
  std::optional<std::string> min_version = std::nullopt;
  std::string model = "esp32-devkitc";
};

struct ro_spec {
  std::int64_t id;
  std::int64_t release_id;
  target tgt = target{};
  rollout_state state = rollout_state::active;
  bool allow_downgrade = false;
};

struct dev_spec {
  std::string version;
  std::string id = "esp32-a1b2c3";
  protocol::attr_map attrs = {};
  std::string model = "esp32-devkitc";
};

struct select_case {
  std::string name;
  std::vector<rel_spec> releases;
  std::vector<ro_spec> rollouts;
  dev_spec device;
  std::int64_t want_rollout;  // 0: no update
  bool want_downgrade = false;
};

// Test names and failure messages show the case's name instead of its bytes.
void PrintTo(const select_case& c, std::ostream* os) {
  *os << c.name;
}

target group(protocol::attr_map attrs) {
  target t;
  t.type = target::kind::group;
  t.attrs = std::move(attrs);
  return t;
}

target devices(std::vector<std::string> ids) {
  target t;
  t.type = target::kind::devices;
  t.ids = std::move(ids);
  return t;
}

target percent(std::uint32_t basis_points) {
  target t;
  t.type = target::kind::percent;
  t.basis_points = basis_points;
  return t;
}

catalog build(const select_case& c) {
  catalog cat;
  for (const auto& r : c.releases) {
    release rel;
    rel.id = r.id;
    rel.model = r.model;
    rel.version_text = r.version;
    rel.version = ver(r.version);
    if (r.min_version) rel.min_version = ver(*r.min_version);
    rel.sha256 = std::string(64, 'a');
    rel.size = 1024;
    cat.releases.push_back(std::move(rel));
  }
  for (const auto& r : c.rollouts) {
    rollout ro;
    ro.id = r.id;
    ro.id_text = std::to_string(r.id);
    ro.name = "rollout " + ro.id_text;
    ro.release_id = r.release_id;
    ro.tgt = r.tgt;
    ro.state = r.state;
    ro.allow_downgrade = r.allow_downgrade;
    cat.rollouts.push_back(std::move(ro));
  }
  cat.index();
  return cat;
}

device_facts facts(const dev_spec& d) {
  return device_facts{d.id, d.model, ver(d.version), d.attrs};
}

// From shared/vectors/buckets.json: rollout "1", device "esp32-4d3c1a" has bucket 2097.
constexpr const char* kBucket2097 = "esp32-4d3c1a";

const std::vector<select_case>& cases() {
  static const std::vector<select_case> all = {
      {"no_rollouts", {{1, "1.1.0"}}, {}, {"1.0.0"}, 0},
      {"single_upgrade", {{1, "1.1.0"}}, {{1, 1}}, {"1.0.0"}, 1},
      {"highest_version_wins", {{1, "1.1.0"}, {2, "1.2.0"}}, {{1, 1}, {2, 2}}, {"1.0.0"}, 2},
      {"highest_version_beats_newer_rollout",
       {{1, "1.2.0"}, {2, "1.1.0"}},
       {{5, 1}, {6, 2}},
       {"1.0.0"},
       5},
      {"semver_not_text_order", {{1, "1.9.2"}, {2, "1.10.0"}}, {{1, 2}, {2, 1}}, {"1.0.0"}, 1},
      {"tie_newest_rollout", {{1, "1.1.0"}}, {{3, 1}, {7, 1}, {5, 1}}, {"1.0.0"}, 7},
      {"tie_across_build_metadata",
       {{1, "1.1.0+b7"}, {2, "1.1.0"}},
       {{9, 1}, {4, 2}},
       {"1.0.0"},
       9},
      {"paused_skipped",
       {{1, "1.1.0"}, {2, "1.2.0"}},
       {{4, 1}, {9, 2, {}, rollout_state::paused}},
       {"1.0.0"},
       4},
      {"only_paused", {{1, "1.1.0"}}, {{4, 1, {}, rollout_state::paused}}, {"1.0.0"}, 0},
      {"cancelled_skipped",
       {{1, "1.1.0"}, {2, "1.2.0"}},
       {{4, 1}, {9, 2, {}, rollout_state::cancelled}},
       {"1.0.0"},
       4},
      {"only_cancelled", {{1, "1.1.0"}}, {{4, 1, {}, rollout_state::cancelled}}, {"1.0.0"}, 0},
      {"min_version_above_device", {{1, "2.0.0", "1.5.0"}}, {{1, 1}}, {"1.4.9"}, 0},
      {"min_version_equal_device", {{1, "2.0.0", "1.5.0"}}, {{1, 1}}, {"1.5.0"}, 1},
      {"min_version_below_device", {{1, "2.0.0", "1.5.0"}}, {{1, 1}}, {"1.6.0"}, 1},
      {"min_version_falls_back_to_lower_release",
       {{1, "1.5.0"}, {2, "2.0.0", "1.5.0"}},
       {{1, 1}, {2, 2}},
       {"1.0.0"},
       1},
      {"min_version_prerelease_is_below_release",
       {{1, "2.0.0", "1.5.0"}},
       {{1, 1}},
       {"1.5.0-rc.1"},
       0},
      {"downgrade_refused_without_allow", {{1, "1.0.0"}}, {{1, 1}}, {"1.1.0"}, 0},
      {"downgrade_with_allow",
       {{1, "1.0.0"}},
       {{1, 1, {}, rollout_state::active, true}},
       {"1.1.0"},
       1,
       true},
      {"allow_downgrade_still_upgrades",
       {{1, "1.2.0"}},
       {{1, 1, {}, rollout_state::active, true}},
       {"1.1.0"},
       1,
       false},
      {"upgrade_beats_downgrade",
       {{1, "1.0.0"}, {2, "1.2.0"}},
       {{10, 1, {}, rollout_state::active, true}, {2, 2}},
       {"1.1.0"},
       2,
       false},
      {"downgrade_highest_lower_version",
       {{1, "1.0.0"}, {2, "1.0.5"}},
       {{1, 1, {}, rollout_state::active, true}, {2, 2, {}, rollout_state::active, true}},
       {"1.1.0"},
       2,
       true},
      {"same_version_never_offered", {{1, "1.1.0"}}, {{1, 1}}, {"1.1.0"}, 0},
      {"same_version_never_offered_even_with_downgrade",
       {{1, "1.1.0"}},
       {{1, 1, {}, rollout_state::active, true}},
       {"1.1.0"},
       0},
      {"same_version_ignoring_build_metadata",
       {{1, "1.1.0+b7"}},
       {{1, 1, {}, rollout_state::active, true}},
       {"1.1.0"},
       0},
      {"other_model_ignored", {{1, "1.9.0", std::nullopt, "esp32-s3"}}, {{1, 1}}, {"1.0.0"}, 0},
      {"other_model_ignored_own_offered",
       {{1, "1.9.0", std::nullopt, "esp32-s3"}, {2, "1.1.0"}},
       {{8, 1}, {2, 2}},
       {"1.0.0"},
       2},
      {"rollout_of_missing_release", {{1, "1.1.0"}}, {{1, 99}, {2, 1}}, {"1.0.0"}, 2},
      {"group_matches",
       {{1, "1.1.0"}},
       {{1, 1, group({{"site", "warehouse-3"}, {"ring", "canary"}})}},
       {"1.0.0", "esp32-a1b2c3", {{"site", "warehouse-3"}, {"ring", "canary"}, {"x", "y"}}},
       1},
      {"group_value_differs",
       {{1, "1.1.0"}},
       {{1, 1, group({{"site", "warehouse-3"}})}},
       {"1.0.0", "esp32-a1b2c3", {{"site", "warehouse-4"}}},
       0},
      {"group_attr_missing",
       {{1, "1.1.0"}},
       {{1, 1, group({{"site", "warehouse-3"}, {"ring", "canary"}})}},
       {"1.0.0", "esp32-a1b2c3", {{"site", "warehouse-3"}}},
       0},
      {"group_without_device_attrs",
       {{1, "1.1.0"}},
       {{1, 1, group({{"site", "warehouse-3"}})}},
       {"1.0.0"},
       0},
      {"devices_listed",
       {{1, "1.1.0"}},
       {{1, 1, devices({"esp32-000001", "esp32-a1b2c3"})}},
       {"1.0.0"},
       1},
      {"devices_not_listed",
       {{1, "1.1.0"}},
       {{1, 1, devices({"esp32-000001", "esp32-A1B2C3"})}},
       {"1.0.0"},
       0},
      {"percent_included", {{1, "1.1.0"}}, {{1, 1, percent(3000)}}, {"1.0.0", kBucket2097}, 1},
      {"percent_boundary_included",
       {{1, "1.1.0"}},
       {{1, 1, percent(2098)}},
       {"1.0.0", kBucket2097},
       1},
      {"percent_boundary_excluded",
       {{1, "1.1.0"}},
       {{1, 1, percent(2097)}},
       {"1.0.0", kBucket2097},
       0},
      {"percent_zero", {{1, "1.1.0"}}, {{1, 1, percent(0)}}, {"1.0.0", kBucket2097}, 0},
      {"percent_hundred", {{1, "1.1.0"}}, {{1, 1, percent(10000)}}, {"1.0.0", kBucket2097}, 1},
      {"excluded_from_higher_gets_lower",
       {{1, "1.1.0"}, {2, "1.2.0"}},
       {{1, 2, percent(1000)}, {2, 1}},
       {"1.0.0", kBucket2097},
       2},
      {"prerelease_below_release", {{1, "1.1.0"}}, {{1, 1}}, {"1.1.0-rc.1"}, 1},
      {"release_not_downgraded_to_prerelease", {{1, "1.1.0-rc.2"}}, {{1, 1}}, {"1.1.0"}, 0},
      {"prerelease_numeric_order",
       {{1, "1.1.0-rc.10"}, {2, "1.1.0-rc.9"}},
       {{1, 1}, {2, 2}},
       {"1.0.0"},
       1},
      {"prerelease_upgrade_from_older_prerelease",
       {{1, "1.1.0-rc.2"}},
       {{1, 1}},
       {"1.1.0-rc.1"},
       1},
  };
  return all;
}

class rollout_select : public ::testing::TestWithParam<select_case> {};

TEST_P(rollout_select, case) {
  const auto& c = GetParam();
  const auto cat = build(c);
  const auto d = facts(c.device);
  const auto got = select(cat, d);
  if (c.want_rollout == 0) {
    EXPECT_FALSE(got.has_value()) << "offered rollout " << got->chosen->id;
    return;
  }
  ASSERT_TRUE(got.has_value());
  ASSERT_NE(got->chosen, nullptr);
  ASSERT_NE(got->rel, nullptr);
  EXPECT_EQ(got->chosen->id, c.want_rollout);
  EXPECT_EQ(got->rel->id, got->chosen->release_id);
  EXPECT_EQ(got->downgrade, c.want_downgrade);
  // The decision points into the catalog itself.
  EXPECT_GE(got->chosen, cat.rollouts.data());
  EXPECT_LT(got->chosen, cat.rollouts.data() + cat.rollouts.size());
}

INSTANTIATE_TEST_SUITE_P(table, rollout_select, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<select_case>& info) {
                           return info.param.name;
                         });

TEST(rollout_catalog, index_keeps_active_and_paused_by_release_model) {
  select_case c{"",
                {{1, "1.1.0"}, {2, "2.0.0", std::nullopt, "esp32-s3"}},
                {{1, 1},
                 {2, 1, {}, rollout_state::paused},
                 {3, 1, {}, rollout_state::cancelled},
                 {4, 2},
                 {5, 77}},
                {"1.0.0"},
                0};
  const auto cat = build(c);
  const auto& devkit = cat.rollouts_of_model("esp32-devkitc");
  ASSERT_EQ(devkit.size(), 2u);
  EXPECT_EQ(devkit[0]->id, 1);
  EXPECT_EQ(devkit[1]->id, 2);
  const auto& s3 = cat.rollouts_of_model("esp32-s3");
  ASSERT_EQ(s3.size(), 1u);
  EXPECT_EQ(s3[0]->id, 4);
  EXPECT_TRUE(cat.rollouts_of_model("unknown").empty());
  EXPECT_EQ(&cat.rollouts_of_model("unknown"), &cat.rollouts_of_model("other"));

  ASSERT_NE(cat.find_release(2), nullptr);
  EXPECT_EQ(cat.find_release(2)->model, "esp32-s3");
  EXPECT_EQ(cat.find_release(77), nullptr);

  catalog empty;
  EXPECT_TRUE(empty.rollouts_of_model("esp32-devkitc").empty());
  EXPECT_EQ(empty.find_release(1), nullptr);
  EXPECT_FALSE(select(empty, facts({"1.0.0"})).has_value());
}

TEST(rollout_catalog, copies_and_moves_point_into_their_own_vectors) {
  select_case c{"", {{1, "1.1.0"}}, {{1, 1}}, {"1.0.0"}, 1};
  auto original = std::make_unique<catalog>(build(c));

  catalog copy(*original);
  catalog assigned;
  assigned = *original;
  original.reset();  // the copies must not point into it
  for (const catalog* cat : {&copy, &assigned}) {
    const auto& list = cat->rollouts_of_model("esp32-devkitc");
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0], &cat->rollouts[0]);
    const auto got = select(*cat, facts(c.device));
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->chosen, &cat->rollouts[0]);
    EXPECT_EQ(got->rel, &cat->releases[0]);
  }

  catalog moved(std::move(copy));
  ASSERT_EQ(moved.rollouts_of_model("esp32-devkitc").size(), 1u);
  EXPECT_EQ(moved.rollouts_of_model("esp32-devkitc")[0], &moved.rollouts[0]);
}

TEST(rollout_catalog, reindex_after_change) {
  select_case c{"", {{1, "1.1.0"}}, {{1, 1}}, {"1.0.0"}, 1};
  auto cat = build(c);
  cat.rollouts[0].state = rollout_state::cancelled;
  cat.index();
  EXPECT_TRUE(cat.rollouts_of_model("esp32-devkitc").empty());
  EXPECT_FALSE(select(cat, facts(c.device)).has_value());
}

TEST(rollout_target, all_includes_every_device) {
  device_facts d{"anything", "m", ver("0.0.1"), {}};
  EXPECT_TRUE(target_includes(target{}, "1", d));
}

}  // namespace
}  // namespace otter::rollout
