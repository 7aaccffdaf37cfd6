#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "protocol/semver.hpp"

namespace {

using otter::protocol::compare;
using otter::protocol::parse_semver;
using otter::protocol::semver;

nlohmann::json load_vectors() {
  std::ifstream in(OTTER_SHARED_DIR "/vectors/semver.json");
  EXPECT_TRUE(in.good()) << "cannot open " OTTER_SHARED_DIR "/vectors/semver.json";
  return nlohmann::json::parse(in);
}

semver must_parse(const std::string& s) {
  auto v = parse_semver(s);
  EXPECT_TRUE(v.has_value()) << "refused valid version \"" << s << "\"";
  return v.value_or(semver{});
}

// a < b in every spelling of the comparison.
void expect_less(const std::string& a, const std::string& b) {
  const auto va = must_parse(a);
  const auto vb = must_parse(b);
  EXPECT_TRUE(compare(va, vb) < 0) << a << " should be < " << b;
  EXPECT_TRUE(compare(vb, va) > 0) << b << " should be > " << a;
  EXPECT_TRUE(va < vb) << a << " < " << b;
  EXPECT_FALSE(va == vb) << a << " == " << b;
}

}  // namespace

TEST(semver, vectors_file_is_not_empty) {
  const auto v = load_vectors();
  EXPECT_GE(v.at("ascending").size(), 10u);
  EXPECT_GE(v.at("equal").size(), 1u);
  EXPECT_GE(v.at("invalid").size(), 5u);
}

TEST(semver, vectors_ascending_every_pair_ordered) {
  const auto list = load_vectors().at("ascending").get<std::vector<std::string>>();
  for (std::size_t i = 0; i < list.size(); ++i) {
    const auto vi = must_parse(list[i]);
    EXPECT_TRUE(compare(vi, vi) == 0) << list[i];
    for (std::size_t j = i + 1; j < list.size(); ++j) expect_less(list[i], list[j]);
  }
}

TEST(semver, vectors_ascending_sorts_back_from_shuffle) {
  const auto list = load_vectors().at("ascending").get<std::vector<std::string>>();
  std::vector<semver> vs;
  for (const auto& s : list) vs.push_back(must_parse(s));
  std::mt19937 rng(42);
  for (int round = 0; round < 20; ++round) {
    auto shuffled = vs;
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    std::sort(shuffled.begin(), shuffled.end());
    for (std::size_t i = 0; i < list.size(); ++i) EXPECT_EQ(shuffled[i].text(), list[i]);
  }
}

TEST(semver, vectors_equal_pairs) {
  const auto vectors = load_vectors();
  for (const auto& pair : vectors.at("equal")) {
    const auto a = pair.at(0).get<std::string>();
    const auto b = pair.at(1).get<std::string>();
    const auto va = must_parse(a);
    const auto vb = must_parse(b);
    EXPECT_TRUE(compare(va, vb) == 0) << a << " vs " << b;
    EXPECT_TRUE(va == vb) << a << " vs " << b;
    EXPECT_EQ(va.canonical(), vb.canonical());
    EXPECT_NE(va.text(), vb.text());  // the vectors differ in build metadata only
  }
}

TEST(semver, vectors_invalid_refused) {
  for (const auto& s : load_vectors().at("invalid").get<std::vector<std::string>>())
    EXPECT_FALSE(parse_semver(s).has_value()) << "accepted \"" << s << "\"";
}

TEST(semver, semver_org_precedence_examples) {
  // semver.org 2.0.0, section 11.
  expect_less("1.0.0", "2.0.0");
  expect_less("2.0.0", "2.1.0");
  expect_less("2.1.0", "2.1.1");
  expect_less("1.0.0-alpha", "1.0.0");
  const std::vector<std::string> chain{"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta",
                                       "1.0.0-beta",  "1.0.0-beta.2",  "1.0.0-beta.11",
                                       "1.0.0-rc.1",  "1.0.0"};
  for (std::size_t i = 0; i + 1 < chain.size(); ++i) expect_less(chain[i], chain[i + 1]);
}

TEST(semver, protocol_md_examples) {
  expect_less("1.9.2", "1.10.0");
  expect_less("1.0.0-rc.1", "1.0.0");
  expect_less("1.0.0-rc.9", "1.0.0-rc.10");
  EXPECT_TRUE(must_parse("1.1.0+b7") == must_parse("1.1.0"));
}

TEST(semver, identifier_rules) {
  expect_less("1.0.0-1", "1.0.0-a");      // numeric lower than alphanumeric
  expect_less("1.0.0-999", "1.0.0-0a");   // even a "larger looking" one
  expect_less("1.0.0-9", "1.0.0-10");     // numerically, not as text
  expect_less("1.0.0-B", "1.0.0-a");      // ASCII order
  expect_less("1.0.0-a", "1.0.0-a.0");    // shorter set lower
  expect_less("1.0.0-a.b", "1.0.0-a-b");  // "a" is a prefix of the one identifier "a-b"
  expect_less("1.0.0-18446744073709551614", "1.0.0-18446744073709551615");
  expect_less("18446744073709551614.99.99", "18446744073709551615.0.0");
  expect_less("0.0.0", "0.0.1");
  expect_less("0.0.9", "0.1.0");
}

TEST(semver, parse_fills_fields) {
  const auto v = must_parse("1.2.3-rc.1.x-y+build.5.007");
  EXPECT_EQ(v.major, 1u);
  EXPECT_EQ(v.minor, 2u);
  EXPECT_EQ(v.patch, 3u);
  EXPECT_EQ(v.prerelease, (std::vector<std::string>{"rc", "1", "x-y"}));
  EXPECT_EQ(v.build, "build.5.007");
  EXPECT_EQ(v.canonical(), "1.2.3-rc.1.x-y");
  EXPECT_EQ(v.text(), "1.2.3-rc.1.x-y+build.5.007");

  const auto plain = must_parse("10.20.30");
  EXPECT_TRUE(plain.prerelease.empty());
  EXPECT_TRUE(plain.build.empty());
  EXPECT_EQ(plain.canonical(), "10.20.30");
  EXPECT_EQ(plain.text(), "10.20.30");
}

TEST(semver, valid_edge_cases_accepted) {
  for (const std::string s :
       {"0.0.0", "1.0.0-0", "1.0.0--", "1.0.0-x-y-z.--", "1.0.0-0A.is.legal", "1.0.0-00a",
        "1.0.0-alpha+001", "1.0.0+0.build.1-rc.10000aaa-kk-0.1", "1.0.0-alpha-a.b-c+build.1-aef",
        "18446744073709551615.18446744073709551615.18446744073709551615",
        "1.0.0-18446744073709551615", "1.1.2-prerelease+meta", "1.0.0+21AF26D3----117B344092BD"})
    EXPECT_TRUE(parse_semver(s).has_value()) << "refused \"" << s << "\"";
}

TEST(semver, invalid_edge_cases_refused) {
  for (const std::string s : {"18446744073709551616.0.0",
                              "1.18446744073709551616.0",
                              "1.0.18446744073709551616",
                              "1.0.0-18446744073709551616",
                              "1.0.0.0",
                              "1.0.0-alpha_beta",
                              "1.0.0-alpha.",
                              "1.0.0-.alpha",
                              "1.0.0+build..1",
                              "1.0.0+build.",
                              "+1.0.0",
                              " 1.0.0",
                              "1.0.0\n",
                              "1.-1.0",
                              "-1.0.0",
                              "1.0.0+a+b",
                              "a.b.c",
                              "1.0.0-\xc3\xa9",
                              "00.0.0",
                              "1.00.0",
                              "1.0.00",
                              "1..0",
                              "1.0.",
                              ".1.0.0",
                              "1.0.0-+",
                              "V1.0.0",
                              "1.2.3-0123",
                              "1.2.3-00",
                              "1.0.0-01.a",
                              "1,0,0",
                              "１.0.0"})
    EXPECT_FALSE(parse_semver(s).has_value()) << "accepted \"" << s << "\"";
  EXPECT_FALSE(parse_semver(std::string("1.0.0\0", 6)).has_value());
}

TEST(semver, length_limit_128) {
  // "1.0.0-" + identifiers up to exactly 128 characters.
  std::string ok = "1.0.0-";
  ok += std::string(128 - ok.size(), 'a');
  ASSERT_EQ(ok.size(), 128u);
  EXPECT_TRUE(parse_semver(ok).has_value());
  EXPECT_FALSE(parse_semver(ok + "a").has_value());
  std::string build = "1.0.0+";
  build += std::string(129 - build.size(), 'b');
  EXPECT_FALSE(parse_semver(build).has_value());
}

TEST(semver, build_metadata_ignored_in_comparison) {
  EXPECT_TRUE(must_parse("1.0.0+a") == must_parse("1.0.0+b"));
  EXPECT_TRUE(compare(must_parse("1.0.0-rc.1+zzz"), must_parse("1.0.0-rc.1+aaa")) == 0);
  EXPECT_TRUE(must_parse("1.0.0-rc.1+zzz") < must_parse("1.0.0+aaa"));
}
