#include <gtest/gtest.h>

#include <functional>
#include <set>
#include <string>
#include <string_view>

#include "protocol/commands.hpp"
#include "protocol/messages.hpp"
#include "support/refused.hpp"

namespace {

using nlohmann::json;
using otter::errc;
using namespace otter::protocol;

using otter::test::refused;

json with(json j, const char* key, json value) {
  j[key] = std::move(value);
  return j;
}

json without(json j, const char* key) {
  j.erase(key);
  return j;
}

const std::string kSha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

json release_add_base() {
  return {{"model", "esp32-devkitc"}, {"version", "1.1.0"}, {"sha256", kSha}};
}

json rollout_create_base() {
  return {{"name", "spring"},
          {"model", "esp32-devkitc"},
          {"version", "1.1.0"},
          {"target", {{"type", "percent"}, {"percent", 10}}}};
}

}  // namespace

// ---------------------------------------------------------------- envelope

TEST(commands_request, protocol_md_example) {
  const auto obj = parse_object(R"({"id": "a-1", "cmd": "rollout.create", "args": {"name": "x"}})");
  ASSERT_TRUE(obj.ok());
  const auto r = parse_admin_request(*obj);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->id, "a-1");
  EXPECT_EQ(r->cmd, "rollout.create");
  EXPECT_EQ(r->args, (json{{"name", "x"}}));
}

TEST(commands_request, args_default_to_empty_object) {
  const auto r = parse_admin_request({{"id", "a-2"}, {"cmd", "metrics.get"}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->args.is_object());
  EXPECT_TRUE(r->args.empty());
}

TEST(commands_request, unknown_command_is_not_the_parsers_concern) {
  const auto r = parse_admin_request({{"id", "a-3"}, {"cmd", "release.delete"}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->cmd, "release.delete");
}

TEST(commands_request, refusals) {
  const json base = {{"id", "a-1"}, {"cmd", "metrics.get"}, {"args", json::object()}};
  EXPECT_TRUE(refused(parse_admin_request(without(base, "id")), "id"));
  EXPECT_TRUE(refused(parse_admin_request(without(base, "cmd")), "cmd"));
  for (const json& bad : {json(""), json(std::string(65, 'i')), json(1), json(nullptr)})
    EXPECT_TRUE(refused(parse_admin_request(with(base, "id", bad)), "id")) << bad;
  for (const json& bad : {json(""), json(std::string(65, 'c')), json(1), json::array()})
    EXPECT_TRUE(refused(parse_admin_request(with(base, "cmd", bad)), "cmd")) << bad;
  for (const json& bad : {json::array(), json("x"), json(nullptr), json(1)})
    EXPECT_TRUE(refused(parse_admin_request(with(base, "args", bad)), "args")) << bad;
  EXPECT_TRUE(parse_admin_request(with(base, "id", std::string(64, 'i'))).ok());
  const auto not_obj = parse_admin_request(json::array());
  ASSERT_FALSE(not_obj.ok());
  EXPECT_EQ(not_obj.error().code, errc::bad_request);
}

// ---------------------------------------------------------------- command names

TEST(commands_names, known_and_read_only_match_protocol_md) {
  const std::set<std::string> writes{"release.add",   "rollout.create", "rollout.update",
                                     "rollout.pause", "rollout.resume", "rollout.cancel"};
  const std::set<std::string> reads{"release.get",  "release.list", "rollout.get",
                                    "rollout.list", "device.list",  "device.get",
                                    "status.list",  "events.list",  "metrics.get"};
  for (const auto& c : writes) {
    EXPECT_TRUE(is_known_command(c)) << c;
    EXPECT_FALSE(is_read_only_command(c)) << c;
  }
  for (const auto& c : reads) {
    EXPECT_TRUE(is_known_command(c)) << c;
    EXPECT_TRUE(is_read_only_command(c)) << c;
  }
  for (const std::string c : {"", "release", "release.delete", "Release.add", "release.add ",
                              "rollout.delete", "metrics", "device.update", "events.list.all"}) {
    EXPECT_FALSE(is_known_command(c)) << c;
    EXPECT_FALSE(is_read_only_command(c)) << c;
  }
  const auto changing = changing_commands();
  EXPECT_EQ(std::set<std::string>(changing.begin(), changing.end()), writes);
}

TEST(commands_names, rollout_states) {
  for (const auto s : {rollout_state::active, rollout_state::paused, rollout_state::cancelled})
    EXPECT_EQ(rollout_state_from_string(to_string(s)), s);
  EXPECT_EQ(to_string(rollout_state::active), "active");
  EXPECT_EQ(to_string(rollout_state::paused), "paused");
  EXPECT_EQ(to_string(rollout_state::cancelled), "cancelled");
  EXPECT_FALSE(rollout_state_from_string("canceled").has_value());
  EXPECT_FALSE(rollout_state_from_string("Active").has_value());
}

// ---------------------------------------------------------------- args not an object

TEST(commands_args, every_parser_refuses_non_objects) {
  const json bad = json::array();
  EXPECT_TRUE(refused(parse_release_add(bad), "args"));
  EXPECT_TRUE(refused(parse_release_get(bad), "args"));
  EXPECT_TRUE(refused(parse_release_list(bad), "args"));
  EXPECT_TRUE(refused(parse_rollout_create(bad), "args"));
  EXPECT_TRUE(refused(parse_rollout_ref(bad), "args"));
  EXPECT_TRUE(refused(parse_rollout_update(bad), "args"));
  EXPECT_TRUE(refused(parse_rollout_list(json("x")), "args"));
  EXPECT_TRUE(refused(parse_device_list(json(nullptr)), "args"));
  EXPECT_TRUE(refused(parse_device_get(bad), "args"));
  EXPECT_TRUE(refused(parse_status_list(bad), "args"));
  EXPECT_TRUE(refused(parse_events_list(bad), "args"));
}

// ---------------------------------------------------------------- paging

namespace {
// Every list command, reduced to its page_args.
const std::vector<std::pair<const char*, std::function<otter::result<page_args>(const json&)>>>&
list_parsers() {
  static const std::vector<
      std::pair<const char*, std::function<otter::result<page_args>(const json&)>>>
      parsers{
          {"release.list",
           [](const json& a) -> otter::result<page_args> {
             auto r = parse_release_list(a);
             if (!r) return std::move(r).error();
             return r->page;
           }},
          {"rollout.list",
           [](const json& a) -> otter::result<page_args> {
             auto r = parse_rollout_list(a);
             if (!r) return std::move(r).error();
             return r->page;
           }},
          {"device.list",
           [](const json& a) -> otter::result<page_args> {
             auto r = parse_device_list(a);
             if (!r) return std::move(r).error();
             return r->page;
           }},
          {"status.list",
           [](const json& a) -> otter::result<page_args> {
             auto r = parse_status_list(a);
             if (!r) return std::move(r).error();
             return r->page;
           }},
          {"events.list",
           [](const json& a) -> otter::result<page_args> {
             auto r = parse_events_list(a);
             if (!r) return std::move(r).error();
             return r->page;
           }},
      };
  return parsers;
}
}  // namespace

TEST(commands_page, defaults) {
  for (const auto& [name, parse] : list_parsers()) {
    const auto p = parse(json::object());
    ASSERT_TRUE(p.ok()) << name;
    EXPECT_EQ(p->limit, 100) << name;
    EXPECT_FALSE(p->after.has_value()) << name;
  }
}

TEST(commands_page, limit) {
  for (const auto& [name, parse] : list_parsers()) {
    EXPECT_EQ(parse({{"limit", 1}})->limit, 1) << name;
    EXPECT_EQ(parse({{"limit", 1000}})->limit, 1000) << name;
    EXPECT_EQ(parse({{"limit", 1001}})->limit, 1000) << name;
    EXPECT_EQ(parse({{"limit", 1000000000000}})->limit, 1000) << name;
    EXPECT_EQ(parse({{"limit", 18446744073709551615u}})->limit, 1000) << name;
    for (const json& bad :
         {json(0), json(-5), json("10"), json(10.5), json(10.0), json(nullptr), json(true)})
      EXPECT_TRUE(refused(parse({{"limit", bad}}), "limit")) << name << " " << bad;
  }
}

TEST(commands_page, after) {
  for (const auto& [name, parse] : list_parsers()) {
    EXPECT_EQ(parse({{"after", "0"}})->after, 0) << name;
    EXPECT_EQ(parse({{"after", "123"}})->after, 123) << name;
    EXPECT_EQ(parse({{"after", "9223372036854775807"}})->after, 9223372036854775807) << name;
    for (const json& bad :
         {json(""), json("12a"), json("-1"), json(" 1"), json("+1"), json("9223372036854775808"),
          json(std::string(20, '1')), json(5), json(nullptr)})
      EXPECT_TRUE(refused(parse({{"after", bad}}), "after")) << name << " " << bad;
  }
}

// ---------------------------------------------------------------- releases

TEST(commands_release, add_full) {
  const auto r = parse_release_add(
      with(with(with(release_add_base(), "min_version", "1.0.0-rc.1"), "notes", "fixes"),
           "image_sig", "MEUCIQDx_-9"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->model, "esp32-devkitc");
  EXPECT_EQ(r->version.text, "1.1.0");
  EXPECT_EQ(r->version.value.minor, 1u);
  EXPECT_EQ(r->sha256, kSha);
  ASSERT_TRUE(r->min_version.has_value());
  EXPECT_EQ(r->min_version->text, "1.0.0-rc.1");
  EXPECT_EQ(r->min_version->value.prerelease, (std::vector<std::string>{"rc", "1"}));
  EXPECT_EQ(r->notes, "fixes");
  EXPECT_EQ(r->image_sig, "MEUCIQDx_-9");
}

TEST(commands_release, add_minimal) {
  const auto r = parse_release_add(release_add_base());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(r->min_version.has_value());
  EXPECT_FALSE(r->notes.has_value());
  EXPECT_FALSE(r->image_sig.has_value());
  const auto build = parse_release_add(with(release_add_base(), "version", "1.1.0+b7"));
  ASSERT_TRUE(build.ok());
  EXPECT_EQ(build->version.text, "1.1.0+b7");
  EXPECT_EQ(build->version.value.canonical(), "1.1.0");
}

TEST(commands_release, add_refused) {
  for (const char* f : {"model", "version", "sha256"})
    EXPECT_TRUE(refused(parse_release_add(without(release_add_base(), f)), f)) << f;
  std::string upper = kSha;
  upper[0] = 'E';
  for (const json& bad : {json(upper), json(kSha.substr(1)), json(kSha + "0"), json(1)})
    EXPECT_TRUE(refused(parse_release_add(with(release_add_base(), "sha256", bad)), "sha256"));
  EXPECT_TRUE(refused(parse_release_add(with(release_add_base(), "model", "a b")), "model"));
  EXPECT_TRUE(refused(parse_release_add(with(release_add_base(), "version", "1.1")), "version"));
  EXPECT_TRUE(
      refused(parse_release_add(with(release_add_base(), "min_version", "v1")), "min_version"));
  EXPECT_TRUE(parse_release_add(with(release_add_base(), "notes", std::string(4096, 'n'))).ok());
  EXPECT_TRUE(parse_release_add(with(release_add_base(), "notes", "")).ok());
  EXPECT_TRUE(refused(parse_release_add(with(release_add_base(), "notes", std::string(4097, 'n'))),
                      "notes"));
  EXPECT_TRUE(refused(parse_release_add(with(release_add_base(), "notes", 1)), "notes"));
  EXPECT_TRUE(parse_release_add(with(release_add_base(), "image_sig", std::string(128, 'A'))).ok());
  for (const json& bad : {json(""), json(std::string(129, 'A')), json("abc+def"), json("abc/def"),
                          json("abc="), json("ab cd"), json(12)})
    EXPECT_TRUE(refused(parse_release_add(with(release_add_base(), "image_sig", bad)), "image_sig"))
        << bad;
  EXPECT_TRUE(parse_release_add(with(release_add_base(), "future_field", {1, 2})).ok());
}

TEST(commands_release, get_and_list) {
  const auto g = parse_release_get({{"model", "m1"}, {"version", "2.0.0"}});
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->model, "m1");
  EXPECT_EQ(g->version.value.major, 2u);
  EXPECT_TRUE(refused(parse_release_get({{"model", "m1"}}), "version"));
  EXPECT_TRUE(refused(parse_release_get({{"version", "2.0.0"}}), "model"));
  EXPECT_TRUE(refused(parse_release_get({{"model", "m1"}, {"version", "2.0"}}), "version"));

  EXPECT_FALSE(parse_release_list(json::object())->model.has_value());
  EXPECT_EQ(parse_release_list({{"model", "m1"}})->model, "m1");
  EXPECT_TRUE(refused(parse_release_list({{"model", ""}}), "model"));
  EXPECT_TRUE(refused(parse_release_list({{"model", 5}}), "model"));
}

// ---------------------------------------------------------------- rollouts

TEST(commands_rollout, create) {
  const auto r = parse_rollout_create(rollout_create_base());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->name, "spring");
  EXPECT_EQ(r->model, "esp32-devkitc");
  EXPECT_EQ(r->version.text, "1.1.0");
  EXPECT_EQ(r->tgt.type, target::kind::percent);
  EXPECT_EQ(r->tgt.basis_points, 1000u);
  EXPECT_FALSE(r->allow_downgrade);
  EXPECT_TRUE(
      parse_rollout_create(with(rollout_create_base(), "allow_downgrade", true))->allow_downgrade);
  EXPECT_FALSE(
      parse_rollout_create(with(rollout_create_base(), "allow_downgrade", false))->allow_downgrade);
  EXPECT_TRUE(
      parse_rollout_create(with(rollout_create_base(), "name", std::string(128, 'n'))).ok());
}

TEST(commands_rollout, create_refused) {
  for (const char* f : {"name", "model", "version", "target"})
    EXPECT_TRUE(refused(parse_rollout_create(without(rollout_create_base(), f)), f)) << f;
  for (const json& bad : {json(""), json(std::string(129, 'n')), json(3)})
    EXPECT_TRUE(refused(parse_rollout_create(with(rollout_create_base(), "name", bad)), "name"));
  for (const json& bad : {json("true"), json(1), json(nullptr)})
    EXPECT_TRUE(refused(parse_rollout_create(with(rollout_create_base(), "allow_downgrade", bad)),
                        "allow_downgrade"))
        << bad;
  EXPECT_TRUE(
      refused(parse_rollout_create(with(rollout_create_base(), "target", "all")), "target"));
  const auto r = parse_rollout_create(
      with(rollout_create_base(), "target", {{"type", "percent"}, {"percent", 12.345}}));
  EXPECT_TRUE(refused(r, "percent"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("target"), std::string::npos) << r.error().message;
}

TEST(commands_rollout, ref_ids) {
  EXPECT_EQ(parse_rollout_ref({{"id", "17"}})->id, 17);
  EXPECT_EQ(parse_rollout_ref({{"id", 17}})->id, 17);
  EXPECT_EQ(parse_rollout_ref({{"id", "9223372036854775807"}})->id, 9223372036854775807);
  EXPECT_EQ(parse_rollout_ref({{"id", 9223372036854775807}})->id, 9223372036854775807);
  EXPECT_FALSE(parse_rollout_ref({{"id", "1"}})->reason.has_value());
  EXPECT_TRUE(refused(parse_rollout_ref(json::object()), "id"));
  for (const json& bad : {json("0"), json(0), json(-1), json("-1"), json("abc"), json(""),
                          json(" 1"), json(std::string(20, '1')), json("9223372036854775808"),
                          json(9223372036854775808u), json(1.0), json(true), json(nullptr)})
    EXPECT_TRUE(refused(parse_rollout_ref({{"id", bad}}), "id")) << bad;
}

TEST(commands_rollout, ref_reason) {
  EXPECT_EQ(parse_rollout_ref({{"id", "1"}, {"reason", "bad batch"}})->reason, "bad batch");
  EXPECT_TRUE(parse_rollout_ref({{"id", "1"}, {"reason", std::string(256, 'r')}}).ok());
  EXPECT_TRUE(
      refused(parse_rollout_ref({{"id", "1"}, {"reason", std::string(257, 'r')}}), "reason"));
  EXPECT_TRUE(refused(parse_rollout_ref({{"id", "1"}, {"reason", 5}}), "reason"));
}

TEST(commands_rollout, update) {
  const auto r = parse_rollout_update({{"id", "3"}, {"percent", 12.5}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->id, 3);
  EXPECT_EQ(r->basis_points, 1250u);
  EXPECT_EQ(parse_rollout_update({{"id", 3}, {"percent", 100}})->basis_points, 10000u);
  EXPECT_FALSE(parse_rollout_update({{"id", 3}})->basis_points.has_value());
  EXPECT_TRUE(refused(parse_rollout_update({{"percent", 10}}), "id"));
  for (const json& bad : {json(12.345), json(-1), json(100.5), json("10"), json(nullptr)})
    EXPECT_TRUE(refused(parse_rollout_update({{"id", 3}, {"percent", bad}}), "percent")) << bad;
}

TEST(commands_rollout, list) {
  const auto r = parse_rollout_list({{"state", "paused"}, {"model", "m1"}, {"limit", 5}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->state, rollout_state::paused);
  EXPECT_EQ(r->model, "m1");
  EXPECT_EQ(r->page.limit, 5);
  for (const json& bad : {json("done"), json("Active"), json(""), json(1)})
    EXPECT_TRUE(refused(parse_rollout_list({{"state", bad}}), "state")) << bad;
  EXPECT_TRUE(refused(parse_rollout_list({{"model", "a b"}}), "model"));
}

// ---------------------------------------------------------------- devices, status, events

TEST(commands_device, list_and_get) {
  const auto r = parse_device_list({{"model", "m1"}, {"version", "1.0.0-rc.1+b7"}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->model, "m1");
  EXPECT_EQ(r->version, "1.0.0-rc.1");  // identity: build metadata dropped
  EXPECT_EQ(parse_device_list({{"version", "1.0.0"}})->version, "1.0.0");
  for (const json& bad : {json(""), json("not-semver 1"), json("v1.0.0"),
                          json("1.0.0-" + std::string(123, 'v')), json(1)})
    EXPECT_TRUE(refused(parse_device_list({{"version", bad}}), "version")) << bad;
  EXPECT_TRUE(refused(parse_device_list({{"model", 1}}), "model"));

  EXPECT_EQ(parse_device_get({{"id", "dev-01"}})->id, "dev-01");
  EXPECT_TRUE(refused(parse_device_get(json::object()), "id"));
  for (const json& bad : {json(""), json("a/b"), json(std::string(65, 'd')), json(7)})
    EXPECT_TRUE(refused(parse_device_get({{"id", bad}}), "id")) << bad;
}

TEST(commands_status, list) {
  const auto r = parse_status_list({{"device", "d1"}, {"rollout", "17"}, {"state", "rolled_back"}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->device, "d1");
  EXPECT_EQ(r->rollout, 17);
  EXPECT_EQ(r->state, status_state::rolled_back);
  EXPECT_EQ(parse_status_list({{"rollout", 17}})->rollout, 17);
  const auto empty = parse_status_list(json::object());
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(empty->device.has_value());
  EXPECT_FALSE(empty->rollout.has_value());
  EXPECT_FALSE(empty->state.has_value());
  EXPECT_TRUE(refused(parse_status_list({{"device", "bad id"}}), "device"));
  EXPECT_TRUE(refused(parse_status_list({{"rollout", "x"}}), "rollout"));
  EXPECT_TRUE(refused(parse_status_list({{"rollout", 0}}), "rollout"));
  EXPECT_TRUE(refused(parse_status_list({{"state", "active"}}), "state"));
  EXPECT_TRUE(refused(parse_status_list({{"state", 1}}), "state"));
}

TEST(commands_events, list) {
  const auto r = parse_events_list({{"device", "d1"}, {"kind", "check"}, {"since", 1700000000}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->device, "d1");
  EXPECT_EQ(r->kind, "check");
  EXPECT_EQ(r->since, 1700000000);
  EXPECT_EQ(parse_events_list({{"since", 0}})->since, 0);
  EXPECT_EQ(parse_events_list({{"since", 253402300799}})->since, 253402300799);  // 9999-12-31
  EXPECT_EQ(parse_events_list({{"kind", "rolled_back"}})->kind, "rolled_back");
  EXPECT_TRUE(parse_events_list({{"kind", std::string(32, 'k')}}).ok());
  for (const json& bad :
       {json(""), json("Check"), json("a-b"), json("a1"), json(std::string(33, 'k')), json(3)})
    EXPECT_TRUE(refused(parse_events_list({{"kind", bad}}), "kind")) << bad;
  for (const json& bad : {json(-1), json("100"), json(1.5), json(253402300800),
                          json(9223372036854775807), json(9223372036854775808u), json(nullptr)})
    EXPECT_TRUE(refused(parse_events_list({{"since", bad}}), "since")) << bad;
  EXPECT_TRUE(refused(parse_events_list({{"device", ""}}), "device"));
}
