// The event's wire text, written by hand for speed, must equal the JSON tree's serialisation.
#include <gtest/gtest.h>

#include <chrono>

#include "store/records.hpp"

namespace otter::store {
namespace {

event_record sample() {
  event_record e;
  e.id = 9007199254740993;  // beyond 2^53: a string on the wire
  e.at = std::chrono::system_clock::from_time_t(1'800'000'000) + std::chrono::milliseconds(42);
  e.kind = "offer";
  e.device = "dev-1";
  e.rollout = 7;
  e.instance = "a";
  e.data = {{"req", "r1"}, {"update", true}, {"version", "1.1.0"}, {"n", 3}};
  return e;
}

TEST(store_records, event_text_equals_the_json_tree) {
  auto e = sample();
  EXPECT_EQ(e.to_json_text(), e.to_json().dump());
  EXPECT_EQ(nlohmann::json::parse(e.to_json_text())["id"], "9007199254740993");
}

TEST(store_records, event_text_with_nulls_and_escapes) {
  event_record e = sample();
  e.device.reset();
  e.rollout.reset();
  e.actor = "op \"quoted\"\n\\";
  e.data = {{"error", "tab\there, unicode \u00e9, control \x01"}};
  EXPECT_EQ(e.to_json_text(), e.to_json().dump());
}

TEST(store_records, event_text_reuses_the_writers_data_text) {
  event_record e = sample();
  e.data_text = e.data.dump();
  EXPECT_EQ(e.to_json_text(), e.to_json().dump());
}

TEST(store_records, event_text_data_that_is_not_an_object_is_empty) {
  event_record e = sample();
  e.data = nlohmann::json::array({1, 2});
  e.data_text = e.data.dump();
  EXPECT_EQ(e.to_json_text(), e.to_json().dump());
  EXPECT_TRUE(nlohmann::json::parse(e.to_json_text())["data"].empty());
}

TEST(store_records, event_text_never_throws_on_invalid_utf8) {
  event_record e = sample();
  e.actor = std::string("bad \xff byte");
  std::string text;
  ASSERT_NO_THROW(text = e.to_json_text());
  EXPECT_TRUE(nlohmann::json::accept(text)) << text;
}

}  // namespace
}  // namespace otter::store
