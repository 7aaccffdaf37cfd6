#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "protocol/target.hpp"
#include "support/refused.hpp"

namespace {

using nlohmann::json;
using otter::errc;
using otter::protocol::parse_target;
using otter::protocol::target;

using otter::test::refused;

std::uint32_t basis_points_of(const json& percent) {
  const auto r = parse_target({{"type", "percent"}, {"percent", percent}});
  EXPECT_TRUE(r.ok()) << percent << ": " << (r.ok() ? "" : r.error().message);
  return r.ok() ? r->basis_points : 99999;
}

}  // namespace

TEST(target, protocol_md_examples) {
  const auto all = parse_target(json::parse(R"({"type": "all"})"));
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->type, target::kind::all);

  const auto pct = parse_target(json::parse(R"({"type": "percent", "percent": 12.5})"));
  ASSERT_TRUE(pct.ok());
  EXPECT_EQ(pct->type, target::kind::percent);
  EXPECT_EQ(pct->basis_points, 1250u);

  const auto dev = parse_target(json::parse(R"({"type": "devices", "ids": ["d1", "d2"]})"));
  ASSERT_TRUE(dev.ok());
  EXPECT_EQ(dev->type, target::kind::devices);
  EXPECT_EQ(dev->ids, (std::vector<std::string>{"d1", "d2"}));

  const auto grp =
      parse_target(json::parse(R"({"type": "group", "attrs": {"site": "warehouse-3"}})"));
  ASSERT_TRUE(grp.ok());
  EXPECT_EQ(grp->type, target::kind::group);
  EXPECT_EQ(grp->attrs, (otter::protocol::attr_map{{"site", "warehouse-3"}}));
}

TEST(target, percent_to_basis_points) {
  EXPECT_EQ(basis_points_of(0), 0u);
  EXPECT_EQ(basis_points_of(30), 3000u);
  EXPECT_EQ(basis_points_of(100), 10000u);
  EXPECT_EQ(basis_points_of(12.5), 1250u);
  EXPECT_EQ(basis_points_of(12.34), 1234u);
  EXPECT_EQ(basis_points_of(0.01), 1u);
  EXPECT_EQ(basis_points_of(0.1), 10u);  // 10.000000000000002 after scaling
  EXPECT_EQ(basis_points_of(33.33), 3333u);
  EXPECT_EQ(basis_points_of(99.99), 9999u);
  EXPECT_EQ(basis_points_of(0.29), 29u);  // 28.999999999999996 after scaling
  EXPECT_EQ(basis_points_of(json::parse("50.0")), 5000u);
  EXPECT_EQ(basis_points_of(json::parse("1.10")), 110u);
}

TEST(target, percent_refused) {
  for (const json& bad : {json(12.345), json(0.001), json(100.01), json(101), json(-1), json(-0.5),
                          json("30"), json(true), json(nullptr), json::array({30})}) {
    const auto r = parse_target({{"type", "percent"}, {"percent", bad}});
    EXPECT_TRUE(refused(r, "percent")) << bad;
  }
  EXPECT_TRUE(refused(parse_target({{"type", "percent"}}), "percent"));
}

TEST(target, percent_to_json_prints_number) {
  target t;
  t.type = target::kind::percent;
  t.basis_points = 3000;
  EXPECT_EQ(t.to_json().dump(), R"({"percent":30,"type":"percent"})");
  EXPECT_TRUE(t.to_json().at("percent").is_number_integer());
  t.basis_points = 1250;
  EXPECT_EQ(t.to_json().dump(), R"({"percent":12.5,"type":"percent"})");
  t.basis_points = 1234;
  EXPECT_EQ(t.to_json().dump(), R"({"percent":12.34,"type":"percent"})");
  t.basis_points = 1;
  EXPECT_EQ(t.to_json().dump(), R"({"percent":0.01,"type":"percent"})");
  t.basis_points = 0;
  EXPECT_EQ(t.to_json().dump(), R"({"percent":0,"type":"percent"})");
  t.basis_points = 10000;
  EXPECT_EQ(t.to_json().dump(), R"({"percent":100,"type":"percent"})");
}

TEST(target, percent_round_trips_for_every_basis_point) {
  target t;
  t.type = target::kind::percent;
  for (std::uint32_t bp = 0; bp <= 10000; ++bp) {
    t.basis_points = bp;
    // Through text too, as the database and the wire see it.
    const auto r = parse_target(json::parse(t.to_json().dump()));
    ASSERT_TRUE(r.ok()) << bp << ": " << r.error().message;
    ASSERT_EQ(r->basis_points, bp);
  }
}

TEST(target, devices_dedup_keeps_order) {
  const auto r = parse_target({{"type", "devices"}, {"ids", {"b", "a", "b", "c", "a", "b"}}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->ids, (std::vector<std::string>{"b", "a", "c"}));
  EXPECT_EQ(r->to_json(), (json{{"type", "devices"}, {"ids", {"b", "a", "c"}}}));
}

TEST(target, devices_limits) {
  json ids = json::array();
  for (int i = 0; i < 10000; ++i) ids.push_back("dev-" + std::to_string(i));
  const auto ok = parse_target({{"type", "devices"}, {"ids", ids}});
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->ids.size(), 10000u);
  ids.push_back("dev-10000");
  EXPECT_TRUE(refused(parse_target({{"type", "devices"}, {"ids", ids}}), "ids"));
}

TEST(target, devices_refused) {
  for (const json& bad :
       {json::array(), json("d1"), json(nullptr), json::object(), json::array({"d1", "bad id"}),
        json::array({"d1", 2}), json::array({""}), json::array({std::string(65, 'd')})}) {
    const auto r = parse_target({{"type", "devices"}, {"ids", bad}});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, errc::bad_request);
    EXPECT_NE(r.error().message.find("\"ids"), std::string::npos) << r.error().message;
  }
  EXPECT_TRUE(refused(parse_target({{"type", "devices"}}), "ids"));
  const auto r = parse_target({{"type", "devices"}, {"ids", {"d1", "d2", "no/slash"}}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("\"ids[2]\""), std::string::npos) << r.error().message;
}

TEST(target, group) {
  json sixteen = json::object();
  for (int i = 0; i < 16; ++i) sixteen["k" + std::to_string(i)] = "v";
  EXPECT_TRUE(parse_target({{"type", "group"}, {"attrs", sixteen}}).ok());
  json seventeen = sixteen;
  seventeen["k16"] = "v";
  for (const json& bad :
       {json::object(), seventeen, json::array({"a"}), json{{"k", 1}},
        json{{"k", std::string(129, 'v')}}, json{{std::string(33, 'k'), "v"}}, json{{"", "v"}}})
    EXPECT_TRUE(refused(parse_target({{"type", "group"}, {"attrs", bad}}), "attrs")) << bad;
  EXPECT_TRUE(refused(parse_target({{"type", "group"}}), "attrs"));
  const auto r = parse_target({{"type", "group"}, {"attrs", {{"site", "w3"}, {"hw", "rev2"}}}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->to_json(), (json{{"type", "group"}, {"attrs", {{"site", "w3"}, {"hw", "rev2"}}}}));
}

TEST(target, type_refused) {
  for (const json& bad : {json("some"), json("ALL"), json(""), json(1), json(nullptr)})
    EXPECT_TRUE(refused(parse_target({{"type", bad}}), "type")) << bad;
  EXPECT_TRUE(refused(parse_target(json::object()), "type"));
  EXPECT_TRUE(refused(parse_target(json::array()), "target"));
  EXPECT_TRUE(refused(parse_target(json("all")), "target"));
  // Messages say the field is inside the target.
  const auto r = parse_target({{"type", "percent"}, {"percent", 200}});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().message.starts_with("target: ")) << r.error().message;
}

TEST(target, extra_fields_ignored_and_all_round_trips) {
  const auto r = parse_target({{"type", "all"}, {"percent", "junk"}, {"note", 1}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->type, target::kind::all);
  EXPECT_EQ(r->to_json(), (json{{"type", "all"}}));
  for (const json& j : {json{{"type", "all"}}, json{{"type", "percent"}, {"percent", 7.25}},
                        json{{"type", "devices"}, {"ids", {"x", "y"}}},
                        json{{"type", "group"}, {"attrs", {{"a", "b"}}}}}) {
    const auto t = parse_target(j);
    ASSERT_TRUE(t.ok()) << j;
    EXPECT_EQ(t->to_json(), j);
  }
}
