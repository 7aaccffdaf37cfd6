// Percent buckets against the shared vectors of an independent implementation.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "rollout/bucket.hpp"
#include "rollout/catalog.hpp"

namespace otter::rollout {
namespace {

nlohmann::json bucket_vectors() {
  std::ifstream in(std::filesystem::path(OTTER_SHARED_DIR) / "vectors" / "buckets.json");
  return nlohmann::json::parse(in);
}

std::uint32_t basis_points(const std::string& percent_text) {
  return static_cast<std::uint32_t>(std::lround(std::stod(percent_text) * 100));
}

TEST(rollout_bucket, shared_vectors) {
  const auto v = bucket_vectors();
  const auto& cases = v.at("cases");
  ASSERT_FALSE(cases.empty());
  std::size_t checked = 0;
  for (const auto& c : cases) {
    const auto rollout_id = c.at("rollout").get<std::string>();
    const auto device_id = c.at("device").get<std::string>();
    SCOPED_TRACE(rollout_id + ":" + device_id);
    const auto b = bucket(rollout_id, device_id);
    EXPECT_EQ(b, c.at("bucket").get<std::uint32_t>());
    for (const auto& [percent, included] : c.at("in_at").items()) {
      EXPECT_EQ(in_percent(b, basis_points(percent)), included.get<bool>()) << percent << "%";
      ++checked;
    }
  }
  EXPECT_GT(checked, cases.size());
}

TEST(rollout_bucket, basis_points_from_percent_text) {
  EXPECT_EQ(basis_points("0.07"), 7u);
  EXPECT_EQ(basis_points("12.5"), 1250u);
  EXPECT_EQ(basis_points("99.99"), 9999u);
  EXPECT_EQ(basis_points("100"), 10000u);
}

TEST(rollout_bucket, range_and_boundaries) {
  for (int i = 0; i < 2000; ++i) {
    const auto b = bucket("42", "dev-" + std::to_string(i));
    ASSERT_LT(b, 10000u);
    EXPECT_FALSE(in_percent(b, 0));
    EXPECT_TRUE(in_percent(b, 10000));
    EXPECT_TRUE(in_percent(b, b + 1));
    EXPECT_FALSE(in_percent(b, b));
  }
  // The separator matters: "1:23" and "12:3" are different inputs.
  EXPECT_EQ(bucket("1", "23"), bucket("1", "23"));
  EXPECT_NE(bucket("1", "23"), bucket("12", "3"));
}

TEST(rollout_bucket, raising_percent_keeps_every_included_device) {
  for (int i = 0; i < 500; ++i) {
    const auto b = bucket("r-canary-7", "esp32-" + std::to_string(i));
    bool was_in = false;
    for (std::uint32_t bp = 0; bp <= 10000; bp += 250) {
      const bool now_in = in_percent(b, bp);
      EXPECT_TRUE(!was_in || now_in);
      was_in = now_in;
    }
  }
}

TEST(rollout_bucket, percent_target_uses_the_bucket) {
  const auto v = bucket_vectors();
  for (const auto& c : v.at("cases")) {
    device_facts d;
    d.id = c.at("device").get<std::string>();
    protocol::target t;
    t.type = protocol::target::kind::percent;
    const auto rollout_id = c.at("rollout").get<std::string>();
    for (const auto& [percent, included] : c.at("in_at").items()) {
      t.basis_points = basis_points(percent);
      EXPECT_EQ(target_includes(t, rollout_id, d), included.get<bool>())
          << rollout_id << ":" << d.id << " at " << percent;
    }
  }
}

}  // namespace
}  // namespace otter::rollout
