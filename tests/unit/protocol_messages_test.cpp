#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "protocol/ids.hpp"
#include "protocol/messages.hpp"
#include "support/refused.hpp"

namespace {

using nlohmann::json;
using otter::errc;
using namespace otter::protocol;

using otter::test::refused;

json parse_ok(std::string_view payload) {
  auto r = parse_object(payload);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? r.value() : json::object();
}

std::string repeat(std::string_view s, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out += s;
  return out;
}

json check_base() {
  return {{"req", "c-1"},
          {"model", "esp32-devkitc"},
          {"version", "1.0.0"},
          {"nonce", "9f86d081884c7d659a2feaa0c55ad015"}};
}

json with(json j, const char* key, json value) {
  j[key] = std::move(value);
  return j;
}

json without(json j, const char* key) {
  j.erase(key);
  return j;
}

}  // namespace

// ---------------------------------------------------------------- parse_object

TEST(messages_parse_object, accepts_objects) {
  const auto j = parse_ok(R"({"a": 1, "b": [true, null], "c": {"d": "é"}})");
  EXPECT_EQ(j.at("a"), 1);
  EXPECT_EQ(j.at("c").at("d"), "é");
  EXPECT_TRUE(parse_ok("{}").empty());
  EXPECT_TRUE(parse_ok(" \n{ }\t").is_object());
}

TEST(messages_parse_object, size_limit) {
  // Exactly at the limit passes; one byte more does not, and the message gives both numbers.
  std::string payload = R"({"pad": ")";
  payload += std::string(16384 - payload.size() - 2, 'x');
  payload += "\"}";
  ASSERT_EQ(payload.size(), 16384u);
  EXPECT_TRUE(parse_object(payload).ok());

  payload.insert(payload.size() - 2, "x");
  const auto r = parse_object(payload);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::bad_request);
  EXPECT_EQ(r.error().message, "payload is 16385 bytes; the limit is 16384");

  const auto small = parse_object(R"({"a": 1})", 5);
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.error().message, "payload is 8 bytes; the limit is 5");
}

TEST(messages_parse_object, malformed_json) {
  for (const std::string p :
       {"", "{", "{\"a\": }", "{'a': 1}", "{\"a\": 1,}", "{\"a\": 1} x", "nul", "{\"a\": 01}",
        "{\"a\": 1e400}", "{\"a\": \"\\ud800\"}", "{\"a\": \"tab\there\"}", "{/*c*/}"}) {
    const auto r = parse_object(p);
    ASSERT_FALSE(r.ok()) << p;
    EXPECT_EQ(r.error().code, errc::bad_request) << p;
    EXPECT_TRUE(r.error().message.starts_with("malformed JSON: ")) << r.error().message;
    EXPECT_EQ(r.error().message.find("[json.exception"), std::string::npos) << r.error().message;
  }
}

TEST(messages_parse_object, invalid_utf8) {
  for (const std::string p : {"{\"a\": \"\xc3\"}", "{\"a\": \"\xed\xa0\x80\"}",
                              "{\"a\": \"\xc0\xaf\"}", "{\"\xff\": 1}", "\xef\xbb"}) {
    const auto r = parse_object(p);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, errc::bad_request);
    EXPECT_TRUE(r.error().message.starts_with("malformed JSON: ")) << r.error().message;
  }
}

TEST(messages_parse_object, error_message_is_valid_utf8_when_parsing_stops_inside_a_character) {
  // Valid UTF-8 whose syntax error sits on a multi-byte character: nlohmann quotes the bytes
  // it read, half a character; the message (sent back as JSON) escapes them. Found by tests/fuzz.
  for (const std::string p :
       {"{\"a\": \xc3\xa9}", "{\"id\":\"x\",\"cmd\":\xe2\x82\xac}", "{\xf0\x9f\x98\x80: 1}"}) {
    ASSERT_TRUE(valid_utf8(p));
    const auto r = parse_object(p);
    ASSERT_FALSE(r.ok()) << p;
    EXPECT_TRUE(valid_utf8(r.error().message)) << r.error().message;
    EXPECT_NE(r.error().message.find("\\x"), std::string::npos) << r.error().message;
    const json answer = {{"message", r.error().message}};
    EXPECT_NO_THROW((void)answer.dump());
  }
}

TEST(messages_parse_object, nul_byte_is_malformed) {
  // nlohmann stops reading at a NUL byte, so "{...}\0garbage" would pass as "{...}".
  for (const std::string& p : {std::string("{\"a\": 1}\0x", 11), std::string("{\"a\": 1}\0", 10),
                               std::string("{\"a\"\0: 1}", 10)}) {
    const auto r = parse_object(p);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, errc::bad_request);
    EXPECT_EQ(r.error().message, "malformed JSON: payload contains a NUL byte");
  }
}

TEST(messages_without_nul, replaces_nul_in_keys_and_strings_at_any_depth) {
  // PostgreSQL cannot store U+0000; an operator's args are recorded whole, unknown fields
  // included (PROTOCOL.md ignores those, so they are not refused).
  const auto in =
      parse_object(R"({"a\u0000":"x\u0000y","n":[1,{"b":"\u0000"}],"t":true,"s":"\\u0000"})");
  ASSERT_TRUE(in.ok());
  const auto out = without_nul(*in);
  const auto expected =
      parse_object(R"({"a\ufffd":"x\ufffdy","n":[1,{"b":"\ufffd"}],"s":"\\u0000","t":true})");
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(out, *expected) << out.dump();
  EXPECT_EQ(without_nul(json("plain")), json("plain"));
  EXPECT_EQ(without_nul(json(nullptr)), json(nullptr));
}

TEST(messages_peek, unparsed_payload_gives_req_read_before_the_problem) {
  const std::string pad(20000, 'x');
  // Oversized, req first: read. Malformed after req: read.
  EXPECT_EQ(peek_string_unparsed("{\"req\":\"big\",\"pad\":\"" + pad + "\"}", "req"), "big");
  EXPECT_EQ(peek_string_unparsed("{\"req\":\"k-1\",\"len\":}", "req"), "k-1");
  EXPECT_EQ(peek_string_unparsed("{\"a\":{\"req\":\"inner\"},\"req\":\"top\",", "req"), "top");
  // Not read: after the error, past the first 64 KiB, not a string, too long, nested only.
  EXPECT_EQ(peek_string_unparsed("{\"len\":,\"req\":\"k-1\"}", "req"), std::nullopt);
  EXPECT_EQ(
      peek_string_unparsed("{\"pad\":\"" + std::string(70000, 'x') + "\",\"req\":\"late\"}", "req"),
      std::nullopt);
  EXPECT_EQ(peek_string_unparsed("{\"req\":5,\"x\":", "req"), std::nullopt);
  EXPECT_EQ(peek_string_unparsed("{\"req\":[\"a\"],\"x\":", "req"), std::nullopt);
  EXPECT_EQ(peek_string_unparsed("{\"req\":\"" + std::string(65, 'r') + "\",", "req"),
            std::nullopt);
  EXPECT_EQ(peek_string_unparsed("{\"a\":{\"req\":\"inner\"}", "req"), std::nullopt);
  EXPECT_EQ(peek_string_unparsed("{\"req\":\"\xff\"}", "req"), std::nullopt);
  EXPECT_EQ(peek_string_unparsed("", "req"), std::nullopt);
  EXPECT_EQ(peek_string_unparsed("[{\"req\":\"in-array\"}]", "req"), std::nullopt);
}

TEST(messages_parse_object, not_an_object) {
  for (const std::string p : {"[]", "[{}]", "\"text\"", "42", "null", "true"}) {
    const auto r = parse_object(p);
    ASSERT_FALSE(r.ok()) << p;
    EXPECT_EQ(r.error().code, errc::bad_request);
    EXPECT_EQ(r.error().message, "payload must be a JSON object") << p;
  }
}

TEST(messages_parse_object, deep_nesting_within_limit_is_safe) {
  const std::size_t depth = 8000;
  const std::string p = "{\"a\":" + std::string(depth, '[') + std::string(depth, ']') + "}";
  ASSERT_LE(p.size(), 16384u);
  const auto r = parse_object(p);
  EXPECT_TRUE(r.ok());
}

// ---------------------------------------------------------------- peek_string

TEST(messages_peek, returns_only_usable_strings) {
  const json j = {{"req", "k-9"},
                  {"num", 7},
                  {"empty", ""},
                  {"long", std::string(65, 'x')},
                  {"max", std::string(64, 'x')}};
  EXPECT_EQ(peek_string(j, "req"), "k-9");
  EXPECT_EQ(peek_string(j, "max"), std::string(64, 'x'));
  EXPECT_FALSE(peek_string(j, "num").has_value());
  EXPECT_FALSE(peek_string(j, "empty").has_value());
  EXPECT_FALSE(peek_string(j, "long").has_value());
  EXPECT_FALSE(peek_string(j, "absent").has_value());
  EXPECT_FALSE(peek_string(json::array({"req"}), "req").has_value());
  EXPECT_FALSE(peek_string(json("req"), "req").has_value());
}

// ---------------------------------------------------------------- check

TEST(messages_check, protocol_md_example) {
  const auto j = parse_ok(R"({"req": "c-1", "model": "esp32-devkitc", "version": "1.0.0",
 "nonce": "9f86d081884c7d659a2feaa0c55ad015", "attrs": {"site": "warehouse-3"}})");
  const auto r = parse_check(j);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->req, "c-1");
  EXPECT_EQ(r->model, "esp32-devkitc");
  EXPECT_EQ(r->version_text, "1.0.0");
  EXPECT_EQ(r->version.major, 1u);
  EXPECT_EQ(r->nonce, "9f86d081884c7d659a2feaa0c55ad015");
  ASSERT_TRUE(r->attrs.has_value());
  EXPECT_EQ(*r->attrs, (attr_map{{"site", "warehouse-3"}}));
}

TEST(messages_check, minimal_and_extras) {
  const auto r = parse_check(with(check_base(), "future_field", {{"x", 1}}));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(r->attrs.has_value());
  const auto v = parse_check(with(check_base(), "version", "1.2.3-rc.1+b7"));
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->version_text, "1.2.3-rc.1+b7");
  EXPECT_EQ(v->version.canonical(), "1.2.3-rc.1");
}

TEST(messages_check, not_an_object) {
  const auto r = parse_check(json::array());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::bad_request);
}

TEST(messages_check, missing_fields_refused) {
  for (const char* f : {"req", "model", "version", "nonce"})
    EXPECT_TRUE(refused(parse_check(without(check_base(), f)), f)) << f;
}

TEST(messages_check, req) {
  EXPECT_TRUE(parse_check(with(check_base(), "req", "x")).ok());
  EXPECT_TRUE(parse_check(with(check_base(), "req", std::string(64, 'r'))).ok());
  // Characters, not bytes: 64 two-byte characters fit.
  EXPECT_TRUE(parse_check(with(check_base(), "req", repeat("é", 64))).ok());
  EXPECT_TRUE(refused(parse_check(with(check_base(), "req", repeat("é", 65))), "req"));
  EXPECT_TRUE(refused(parse_check(with(check_base(), "req", "")), "req"));
  EXPECT_TRUE(refused(parse_check(with(check_base(), "req", std::string(65, 'r'))), "req"));
  EXPECT_TRUE(refused(parse_check(with(check_base(), "req", 17)), "req"));
  EXPECT_TRUE(refused(parse_check(with(check_base(), "req", nullptr)), "req"));
  EXPECT_TRUE(refused(parse_check(with(check_base(), "req", std::string("a\0b", 3))), "req"));
  EXPECT_TRUE(refused(parse_check(with(check_base(), "req", "\xc3")), "req"));
}

TEST(messages_check, model) {
  EXPECT_TRUE(parse_check(with(check_base(), "model", std::string(64, 'm'))).ok());
  for (const json& bad : {json(""), json(std::string(65, 'm')), json("esp 32"), json("a/b"),
                          json(32), json::array({"esp32"})})
    EXPECT_TRUE(refused(parse_check(with(check_base(), "model", bad)), "model")) << bad;
}

TEST(messages_check, version) {
  for (const json& bad : {json("v1.0.0"), json("1.0"), json("01.0.0"), json("1.0.0-"), json(""),
                          json(1), json(1.0), json::object()})
    EXPECT_TRUE(refused(parse_check(with(check_base(), "version", bad)), "version")) << bad;
}

TEST(messages_check, nonce) {
  EXPECT_TRUE(parse_check(with(check_base(), "nonce", std::string(16, 'a'))).ok());
  EXPECT_TRUE(parse_check(with(check_base(), "nonce", std::string(64, 'F'))).ok());
  for (const json& bad : {json(std::string(15, 'a')), json(std::string(65, 'a')),
                          json("9f86d081884c7d659a2feaa0c55ad01g"), json(""),
                          json(12345678901234567), json("9f86d081 884c7d659a2feaa0c55ad015")}) {
    const auto r = parse_check(with(check_base(), "nonce", bad));
    EXPECT_TRUE(refused(r, "nonce")) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().message, "\"nonce\" must be 16 to 64 hex characters");
    }
  }
}

TEST(messages_check, attrs_accepted) {
  EXPECT_EQ(parse_check(with(check_base(), "attrs", json::object()))->attrs, attr_map{});
  json sixteen = json::object();
  for (int i = 0; i < 16; ++i) sixteen["k" + std::to_string(i)] = "v";
  EXPECT_EQ(parse_check(with(check_base(), "attrs", sixteen))->attrs->size(), 16u);
  const json edge = {
      {std::string(32, 'k'), std::string(128, 'v')}, {"empty", ""}, {"x", repeat("é", 128)}};
  const auto r = parse_check(with(check_base(), "attrs", edge));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->attrs->at("empty"), "");
}

TEST(messages_check, attrs_refused) {
  json seventeen = json::object();
  for (int i = 0; i < 17; ++i) seventeen["k" + std::to_string(i)] = "v";
  for (const json& bad :
       {json::array(), json("site"), json(nullptr), seventeen, json{{"", "v"}},
        json{{std::string(33, 'k'), "v"}}, json{{"k", std::string(129, 'v')}}, json{{"k", 1}},
        json{{"k", nullptr}}, json{{"k", true}}, json{{"k", json::object()}}})
    EXPECT_TRUE(refused(parse_check(with(check_base(), "attrs", bad)), "attrs")) << bad;
  // The message also says which pair.
  const auto r = parse_check(with(check_base(), "attrs", json{{"site", 3}}));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message, testing::HasSubstr("\"attrs\" value for \"site\""));
}

// ---------------------------------------------------------------- status

namespace {
json status_base() {
  return {{"version", "1.1.0"}, {"state", "downloading"}};
}
}  // namespace

TEST(messages_status, protocol_md_example) {
  const auto j = parse_ok(
      R"({"req": "s-4", "version": "1.1.0", "state": "downloading", "progress": 42, "rollout": "17"})");
  const auto r = parse_status(j);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->req, "s-4");
  EXPECT_EQ(r->version_text, "1.1.0");
  EXPECT_EQ(r->version.minor, 1u);
  EXPECT_EQ(r->state, status_state::downloading);
  EXPECT_EQ(r->progress, 42);
  EXPECT_EQ(r->rollout, "17");
  EXPECT_FALSE(r->error.has_value());
}

TEST(messages_status, minimal) {
  const auto r = parse_status(status_base());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(r->req.has_value());
  EXPECT_FALSE(r->progress.has_value());
  EXPECT_FALSE(r->rollout.has_value());
}

TEST(messages_status, every_state_round_trips) {
  const struct {
    const char* name;
    status_state state;
  } states[] = {{"downloading", status_state::downloading}, {"verifying", status_state::verifying},
                {"installing", status_state::installing},   {"success", status_state::success},
                {"failed", status_state::failed},           {"rejected", status_state::rejected},
                {"rolled_back", status_state::rolled_back}};
  for (const auto& s : states) {
    EXPECT_EQ(to_string(s.state), s.name);
    EXPECT_EQ(status_state_from_string(s.name), s.state);
    const auto r = parse_status(with(with(status_base(), "state", s.name), "error", "boom"));
    ASSERT_TRUE(r.ok()) << s.name << ": " << r.error().message;
    EXPECT_EQ(r->state, s.state);
    EXPECT_EQ(r->error, "boom");
  }
  EXPECT_FALSE(status_state_from_string("done").has_value());
  EXPECT_FALSE(status_state_from_string("SUCCESS").has_value());
  EXPECT_FALSE(status_state_from_string("").has_value());
}

TEST(messages_status, required_fields) {
  EXPECT_TRUE(refused(parse_status(without(status_base(), "version")), "version"));
  EXPECT_TRUE(refused(parse_status(without(status_base(), "state")), "state"));
  EXPECT_TRUE(refused(parse_status(with(status_base(), "version", "1.1")), "version"));
  for (const json& bad : {json("done"), json("Success"), json(""), json(3), json(nullptr)})
    EXPECT_TRUE(refused(parse_status(with(status_base(), "state", bad)), "state")) << bad;
}

TEST(messages_status, error_required_for_failures) {
  for (const char* s : {"failed", "rejected", "rolled_back"}) {
    EXPECT_TRUE(refused(parse_status(with(status_base(), "state", s)), "error")) << s;
    EXPECT_TRUE(parse_status(with(with(status_base(), "state", s), "error", "")).ok()) << s;
  }
  EXPECT_TRUE(parse_status(with(status_base(), "state", "success")).ok());
  EXPECT_TRUE(parse_status(with(status_base(), "error", std::string(256, 'e'))).ok());
  EXPECT_TRUE(refused(parse_status(with(status_base(), "error", std::string(257, 'e'))), "error"));
  EXPECT_TRUE(refused(parse_status(with(status_base(), "error", 5)), "error"));
  EXPECT_TRUE(
      refused(parse_status(with(with(status_base(), "state", "failed"), "error", json::object())),
              "error"));
}

TEST(messages_status, progress) {
  for (const int p : {0, 1, 42, 100})
    EXPECT_EQ(parse_status(with(status_base(), "progress", p))->progress, p);
  for (const json& bad : {json("42"), json(42.5), json(-1), json(101), json(true), json(nullptr),
                          json(18446744073709551615u)})
    EXPECT_TRUE(refused(parse_status(with(status_base(), "progress", bad)), "progress")) << bad;
}

TEST(messages_status, req_optional_but_checked) {
  EXPECT_EQ(parse_status(with(status_base(), "req", "s-4"))->req, "s-4");
  for (const json& bad : {json(""), json(std::string(65, 'r')), json(4)})
    EXPECT_TRUE(refused(parse_status(with(status_base(), "req", bad)), "req")) << bad;
}

TEST(messages_status, rollout) {
  EXPECT_EQ(parse_status(with(status_base(), "rollout", "17"))->rollout, "17");
  EXPECT_EQ(parse_status(with(status_base(), "rollout", 17))->rollout, "17");
  EXPECT_EQ(parse_status(with(status_base(), "rollout", std::string(20, '9')))->rollout,
            std::string(20, '9'));
  EXPECT_EQ(parse_status(with(status_base(), "rollout", 18446744073709551615u))->rollout,
            "18446744073709551615");
  EXPECT_EQ(parse_status(parse_ok(R"({"version":"1.0.0","state":"success","rollout":5})"))->rollout,
            "5");
  for (const json& bad :
       {json(""), json("abc"), json("1a"), json("-1"), json(" 17"), json(std::string(21, '1')),
        json(0), json(-3), json(1.5), json(17.0), json(true), json::array({"17"})})
    EXPECT_TRUE(refused(parse_status(with(status_base(), "rollout", bad)), "rollout")) << bad;
}

// ---------------------------------------------------------------- chunk request

namespace {
json chunk_base() {
  return {{"file", "3a7bd3e2360a3d29"}, {"offset", 0}, {"len", 4096}};
}
}  // namespace

TEST(messages_chunk, protocol_md_example) {
  const auto j = parse_ok(
      R"({"req": "k-9", "file": "3a7bd3e2360a3d29", "offset": 0, "len": 4096, "count": 8})");
  const auto r = parse_chunk_request(j);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->req, "k-9");
  EXPECT_EQ(r->file, "3a7bd3e2360a3d29");
  EXPECT_EQ(r->offset, 0u);
  EXPECT_EQ(r->len, 4096u);
  EXPECT_EQ(r->count, 8u);
}

TEST(messages_chunk, defaults_and_bounds) {
  const auto r = parse_chunk_request(chunk_base());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(r->req.has_value());
  EXPECT_EQ(r->count, 1u);
  EXPECT_EQ(parse_chunk_request(with(chunk_base(), "offset", 18446744073709551615u))->offset,
            18446744073709551615u);
  EXPECT_EQ(parse_chunk_request(with(chunk_base(), "len", 1))->len, 1u);
  EXPECT_EQ(parse_chunk_request(with(chunk_base(), "len", 1048576))->len, 1048576u);
  EXPECT_EQ(parse_chunk_request(with(chunk_base(), "count", 1024))->count, 1024u);
  EXPECT_EQ(parse_chunk_request(with(chunk_base(), "file", "3A7BD3E2360A3D29"))->file,
            "3A7BD3E2360A3D29");
}

TEST(messages_chunk, refusals) {
  for (const char* f : {"file", "offset", "len"})
    EXPECT_TRUE(refused(parse_chunk_request(without(chunk_base(), f)), f)) << f;
  for (const json& bad : {json("3a7bd3e2360a3d2"), json("3a7bd3e2360a3d290"),
                          json("3a7bd3e2360a3d2z"), json(""), json(1234567890123456)})
    EXPECT_TRUE(refused(parse_chunk_request(with(chunk_base(), "file", bad)), "file")) << bad;
  for (const json& bad : {json(-1), json(1.5), json(4096.0), json("0"), json(nullptr), json(false)})
    EXPECT_TRUE(refused(parse_chunk_request(with(chunk_base(), "offset", bad)), "offset")) << bad;
  for (const json& bad : {json(0), json(-4096), json(1048577), json("4096"), json(4096.5)})
    EXPECT_TRUE(refused(parse_chunk_request(with(chunk_base(), "len", bad)), "len")) << bad;
  for (const json& bad : {json(0), json(-1), json(1025), json("8"), json(2.5)})
    EXPECT_TRUE(refused(parse_chunk_request(with(chunk_base(), "count", bad)), "count")) << bad;
  EXPECT_TRUE(refused(parse_chunk_request(with(chunk_base(), "req", "")), "req"));
}
