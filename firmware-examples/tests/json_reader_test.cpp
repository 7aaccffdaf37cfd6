// The core's JSON reader: strict RFC 8259, every malformed input an error, nothing read past
// the given length.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "otter_core.h"

namespace {

otter_err parse(const std::string& s, otter_json* v = nullptr) {
  // An exact-size heap copy, so that AddressSanitizer sees any read past the end.
  std::unique_ptr<char[]> copy(new char[s.size() ? s.size() : 1]);
  std::memcpy(copy.get(), s.data(), s.size());
  otter_json tmp;
  const auto rc = otter_json_parse(copy.get(), s.size(), v ? v : &tmp);
  if (v) v->p = nullptr;  // the copy is gone
  return rc;
}

TEST(device_core_json, accepts_what_nlohmann_accepts) {
  const std::vector<std::string> good = {
      "{}",
      "[]",
      "0",
      "-0",
      "1.5e+3",
      "-12.25E-2",
      "\"\"",
      "true",
      "false",
      "null",
      " { \"a\" : [ 1 , 2 , { \"b\" : null } ] , \"c\" : \"\\u00e9\\ud83d\\ude00\\n\" } ",
      "\"é✓😀\"",
      "[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]"};  // 16 levels
  for (const auto& s : good) {
    EXPECT_EQ(parse(s), OTTER_OK) << s;
    EXPECT_FALSE(nlohmann::json::parse(s, nullptr, false).is_discarded()) << s;
  }
}

TEST(device_core_json, refuses_malformed_documents) {
  const std::vector<std::string> bad = {"",
                                        " ",
                                        "{",
                                        "}",
                                        "[",
                                        "[1,]",
                                        "{\"a\":1,}",
                                        "{\"a\"}",
                                        "{\"a\":}",
                                        "{a:1}",
                                        "{'a':1}",
                                        "01",
                                        "1.",
                                        ".5",
                                        "1e",
                                        "-",
                                        "+1",
                                        "0x10",
                                        "NaN",
                                        "Infinity",
                                        "tru",
                                        "nul",
                                        "truex",
                                        "\"abc",
                                        "\"\\x\"",
                                        "\"\\u12\"",
                                        "\"\\ud800\"",
                                        "\"\\udc00\"",
                                        "\"\\ud800\\u0041\"",
                                        std::string("\"a\x01\""),
                                        std::string("\"\xff\""),
                                        std::string("\"\xc0\xaf\""),
                                        std::string("\"\xed\xa0\x80\""),
                                        std::string("\"\xe2\x82\""),
                                        "{} {}",
                                        "[1 2]",
                                        "[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]",  // 17 levels
                                        std::string("{\"a\":1}\0", 8),
                                        "/* c */ {}",
                                        "{\"a\":1 \"b\":2}"};
  for (const auto& s : bad) EXPECT_EQ(parse(s), OTTER_E_JSON) << s;
}

TEST(device_core_json, deep_nesting_is_bounded) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_EQ(parse(deep), OTTER_E_JSON);
  const std::string open = std::string(100000, '{');
  EXPECT_EQ(parse(open), OTTER_E_JSON);
}

TEST(device_core_json, members_strings_and_numbers) {
  const std::string doc =
      R"({"s":"a\"b\\c\/d\u00e9\ud83d\ude00","n":18446744073709551615,"big":18446744073709551616,)"
      R"("neg":-9223372036854775808,"f":1.5,"e":1e3,"t":true,"nul":"x\u0000y","o":{"s":"in"},)"
      R"("k\u0065y":"escaped key","lz":-0})";
  otter_json v;
  ASSERT_EQ(otter_json_parse(doc.data(), doc.size(), &v), OTTER_OK);
  otter_json m;
  char out[64];
  std::size_t n = 0;
  ASSERT_EQ(otter_json_member(v, "s", &m), OTTER_OK);
  ASSERT_EQ(otter_json_string(m, out, sizeof out, &n), OTTER_OK);
  EXPECT_EQ(std::string(out, n), "a\"b\\c/dé😀");
  EXPECT_EQ(otter_json_string(m, out, 5, &n), OTTER_E_TOO_LARGE);
  EXPECT_STREQ(out, "");
  std::uint64_t u = 0;
  ASSERT_EQ(otter_json_member(v, "n", &m), OTTER_OK);
  EXPECT_EQ(otter_json_u64(m, &u), OTTER_OK);
  EXPECT_EQ(u, UINT64_MAX);
  ASSERT_EQ(otter_json_member(v, "big", &m), OTTER_OK);
  EXPECT_EQ(otter_json_u64(m, &u), OTTER_E_FIELD);
  std::int64_t i = 0;
  ASSERT_EQ(otter_json_member(v, "neg", &m), OTTER_OK);
  EXPECT_EQ(otter_json_i64(m, &i), OTTER_OK);
  EXPECT_EQ(i, INT64_MIN);
  EXPECT_EQ(otter_json_u64(m, &u), OTTER_E_FIELD);
  for (const char* k : {"f", "e", "t", "s", "o"}) {
    ASSERT_EQ(otter_json_member(v, k, &m), OTTER_OK) << k;
    EXPECT_EQ(otter_json_u64(m, &u), OTTER_E_FIELD) << k;
    EXPECT_EQ(otter_json_i64(m, &i), OTTER_E_FIELD) << k;
  }
  ASSERT_EQ(otter_json_member(v, "lz", &m), OTTER_OK);
  EXPECT_EQ(otter_json_i64(m, &i), OTTER_OK);
  EXPECT_EQ(i, 0);
  int b = 0;
  ASSERT_EQ(otter_json_member(v, "t", &m), OTTER_OK);
  EXPECT_EQ(otter_json_bool(m, &b), OTTER_OK);
  EXPECT_EQ(b, 1);
  ASSERT_EQ(otter_json_member(v, "nul", &m), OTTER_OK);
  EXPECT_EQ(otter_json_string(m, out, sizeof out, &n), OTTER_E_FIELD);  // C strings hold no NUL
  ASSERT_EQ(otter_json_member(v, "key", &m), OTTER_OK);
  ASSERT_EQ(otter_json_string(m, out, sizeof out, &n), OTTER_OK);
  EXPECT_STREQ(out, "escaped key");
  // Only the top level: "s" inside "o" is not found through v, but through o.
  ASSERT_EQ(otter_json_member(v, "o", &m), OTTER_OK);
  otter_json inner;
  ASSERT_EQ(otter_json_member(m, "s", &inner), OTTER_OK);
  ASSERT_EQ(otter_json_string(inner, out, sizeof out, &n), OTTER_OK);
  EXPECT_STREQ(out, "in");
  EXPECT_EQ(otter_json_member(v, "missing", &m), OTTER_E_NOT_FOUND);
  ASSERT_EQ(otter_json_member(v, "t", &m), OTTER_OK);
  EXPECT_EQ(otter_json_member(m, "x", &inner), OTTER_E_FIELD);  // not an object
}

TEST(device_core_json, duplicate_keys_are_refused) {
  const std::string doc = R"({"a":1,"b":2,"\u0061":3})";
  otter_json v, m;
  ASSERT_EQ(otter_json_parse(doc.data(), doc.size(), &v), OTTER_OK);
  EXPECT_EQ(otter_json_member(v, "a", &m), OTTER_E_JSON);
  EXPECT_EQ(otter_json_member(v, "b", &m), OTTER_OK);
}

TEST(device_core_json, random_bytes_never_crash) {
  std::uint64_t state = 7;
  auto next = [&] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<std::uint32_t>(state >> 33);
  };
  const std::string alphabet = "{}[]\",:\\u0123456789abcdefe.-+ tnrl\x01\xc3\xa9\xed\xff";
  int ok = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string s(next() % 40, ' ');
    for (auto& c : s) c = alphabet[next() % alphabet.size()];
    otter_json v{};
    if (parse(s, &v) == OTTER_OK) {
      ++ok;
      // What the reader accepts, a reference parser accepts too.
      EXPECT_FALSE(nlohmann::json::parse(s, nullptr, false).is_discarded()) << s;
    }
  }
  EXPECT_GT(ok, 0);
}

}  // namespace
