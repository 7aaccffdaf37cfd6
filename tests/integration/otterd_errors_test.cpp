// Bad input from the network is normal: every case gets its documented error, is recorded,
// and the service keeps answering.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <chrono>
#include <set>
#include <thread>

#include "support/child_process.hpp"
#include "support/files.hpp"
#include "support/harness.hpp"

namespace otter::test {
namespace {

const std::string kModel = "esp32-devkitc";

class errors_test : public otter_fixture {};

struct bad_case {
  const char* name;
  std::string topic;  // sub-topic under R/dev/D/up/
  std::string payload;
  const char* code;
  const char* req;  // expected echoed req, or nullptr
};

TEST_F(errors_test, every_malformed_device_message_gets_its_error_and_service_keeps_answering) {
  device d(env_, *topics_, "dev-bad");
  d.connect_started();
  const std::string nonce = "\"nonce\":\"00112233445566778899aabbccddeeff\"";
  const std::vector<bad_case> cases = {
      {"malformed json", "check", "{\"req\":", "bad_request", nullptr},
      {"not an object", "check", "[1,2,3]", "bad_request", nullptr},
      {"not utf-8", "check", std::string("{\"req\":\"\xff\"}"), "bad_request", nullptr},
      // Valid UTF-8, but the JSON parser stops inside the "é": its message must not quote half
      // a character (found by tests/fuzz; the answer and the event could not be serialised).
      {"syntax error at a multi-byte character", "check", "{\"req\":\"c0\",\"model\":\xc3\xa9}",
       "bad_request", "c0"},
      // req could be read before the limit was reached: echoed (PROTOCOL.md "where it could be
      // read"); one past the parser's error or the first 64 KiB is not.
      {"oversized", "check", "{\"req\":\"big\",\"pad\":\"" + std::string(17000, 'x') + "\"}",
       "bad_request", "big"},
      {"oversized, req at the end", "check",
       "{\"pad\":\"" + std::string(70000, 'x') + "\",\"req\":\"late\"}", "bad_request", nullptr},
      {"malformed after req", "status", "{\"req\":\"s0\",\"version\":}", "bad_request", "s0"},
      {"missing nonce", "check", R"({"req":"c1","model":"m","version":"1.0.0"})", "bad_request",
       "c1"},
      {"bad version", "check", R"({"req":"c2","model":"m","version":"v1",)" + nonce + "}",
       "bad_request", "c2"},
      {"bad model", "check", R"({"req":"c3","model":"a b","version":"1.0.0",)" + nonce + "}",
       "bad_request", "c3"},
      {"short nonce", "check", R"({"req":"c4","model":"m","version":"1.0.0","nonce":"abc"})",
       "bad_request", "c4"},
      {"too many attrs", "check",
       R"({"req":"c5","model":"m","version":"1.0.0",)" + nonce +
           R"(,"attrs":{"a":"1","b":"2","c":"3","d":"4","e":"5","f":"6","g":"7","h":"8","i":"9","j":"10","k":"11","l":"12","m":"13","n":"14","o":"15","p":"16","q":"17"}})",
       "bad_request", "c5"},
      {"unknown state", "status", R"({"req":"s1","version":"1.0.0","state":"exploded"})",
       "bad_request", "s1"},
      {"failed without error", "status", R"({"req":"s2","version":"1.0.0","state":"failed"})",
       "bad_request", "s2"},
      {"progress out of range", "status",
       R"({"req":"s3","version":"1.0.0","state":"downloading","progress":101})", "bad_request",
       "s3"},
      {"unknown rollout", "status",
       R"({"req":"s4","version":"1.0.0","state":"downloading","rollout":"987654"})", "not_found",
       "s4"},
      {"unknown topic", "reboot", "{}", "bad_request", nullptr},
      {"escaped NUL in an attribute", "check",
       R"({"req":"c6","model":"m","version":"1.0.0",)" + nonce + R"(,"attrs":{"k\u0000":"v"}})",
       "bad_request", "c6"},
  };
  for (const auto& c : cases) {
    auto err = d.send_raw(c.topic, c.payload, topics_->error("dev-bad"));
    ASSERT_TRUE(err) << c.name << ": no error answer";
    EXPECT_EQ((*err)["code"], c.code) << c.name << ": " << err->dump();
    EXPECT_FALSE((*err)["message"].get<std::string>().empty()) << c.name;
    if (c.req) {
      EXPECT_EQ((*err)["req"], c.req) << c.name;
    }
  }
  // Still answering, and every refusal was recorded.
  auto ok = d.check(*pub_, kModel, "1.0.0");
  ASSERT_TRUE(ok) << d.last_error.dump();
  EXPECT_TRUE(ok->signature_ok);
  auto errors = admin_->cmd("events.list", {{"device", "dev-bad"}, {"kind", "error"}});
  EXPECT_EQ(errors["result"]["items"].size(), cases.size()) << errors.dump();
}

TEST_F(errors_test, operator_errors_use_the_documented_codes) {
  struct op_case {
    const char* name;
    std::string cmd;
    nlohmann::json args;
    const char* code;
  };
  const std::vector<op_case> cases = {
      {"unknown command", "release.delete", nlohmann::json::object(), "bad_request"},
      {"missing args", "release.add", nlohmann::json::object(), "bad_request"},
      {"bad sha",
       "release.add",
       {{"model", kModel}, {"version", "1.0.0"}, {"sha256", "xyz"}},
       "bad_request"},
      {"unknown upload",
       "release.add",
       {{"model", kModel}, {"version", "1.0.0"}, {"sha256", std::string(64, 'a')}},
       "not_found"},
      {"unknown rollout", "rollout.get", {{"id", "424242"}}, "not_found"},
      {"unknown device", "device.get", {{"id", "nobody"}}, "not_found"},
      {"unknown release", "release.get", {{"model", kModel}, {"version", "9.9.9"}}, "not_found"},
      {"rollout of unknown release",
       "rollout.create",
       {{"name", "x"}, {"model", kModel}, {"version", "9.9.9"}, {"target", {{"type", "all"}}}},
       "not_found"},
      {"bad percent",
       "rollout.create",
       {{"name", "x"},
        {"model", kModel},
        {"version", "1.0.0"},
        {"target", {{"type", "percent"}, {"percent", 101}}}},
       "bad_request"},
      {"bad target",
       "rollout.create",
       {{"name", "x"}, {"model", kModel}, {"version", "1.0.0"}, {"target", {{"type", "some"}}}},
       "bad_request"},
      {"bad limit", "events.list", {{"limit", 0}}, "bad_request"},
      {"bad cursor", "events.list", {{"after", "abc"}}, "bad_request"},
      {"since past year 9999", "events.list", {{"since", 10000000000000}}, "bad_request"},
      {"bad state filter", "rollout.list", {{"state", "sleeping"}}, "bad_request"},
  };
  for (const auto& c : cases) {
    auto r = admin_->cmd(c.cmd, c.args);
    ASSERT_TRUE(r.is_object()) << c.name << ": no answer";
    EXPECT_EQ(r["ok"], false) << c.name;
    EXPECT_EQ(r["error"]["code"], c.code) << c.name << ": " << r.dump();
  }
  // Envelope errors: malformed JSON has no readable id.
  auto bad = admin_->raw("{not json", "");
  EXPECT_EQ(bad["error"]["code"], "bad_request") << bad.dump();
  // The id was read before the syntax error: echoed.
  auto half = admin_->raw("{\"id\":\"x-0\",\"cmd\":\xe2\x82\xac}", "x-0");
  EXPECT_EQ(half["error"]["code"], "bad_request") << half.dump();
  auto no_cmd = admin_->raw(R"({"id":"x-1"})", "x-1");
  EXPECT_EQ(no_cmd["error"]["code"], "bad_request");
  auto arr = admin_->raw(R"({"id":"x-2","cmd":"release.list","args":[1]})", "x-2");
  EXPECT_EQ(arr["error"]["code"], "bad_request");
  // PostgreSQL cannot store U+0000, and a command's args are recorded whole, unknown fields
  // included: the command runs (unknown args are ignored) and its event is recorded (it was
  // lost before).
  auto nul = admin_->raw(R"({"id":"x-3","cmd":"metrics.get","args":{"k\u0000":"v"}})", "x-3");
  EXPECT_EQ(nul["ok"], true) << nul.dump();

  // Conflicts.
  add_release(kModel, "1.0.0", "one");
  auto up = admin_->upload("dup", "one");
  auto dup = admin_->cmd(
      "release.add",
      {{"model", kModel}, {"version", "1.0.0+build.7"}, {"sha256", up["result"]["sha256"]}});
  EXPECT_EQ(dup["error"]["code"], "conflict") << dup.dump();

  // Every command, refused or not, is an event.
  auto commands = admin_->cmd("events.list", {{"kind", "command"}, {"limit", 1000}});
  EXPECT_GE(commands["result"]["items"].size(), cases.size() + 4);
  bool nul_recorded = false;
  for (const auto& e : commands["result"]["items"])
    nul_recorded = nul_recorded || e["data"]["id"] == "x-3";
  EXPECT_TRUE(nul_recorded);
}

TEST_F(errors_test, roles_are_enforced) {
  operator_client viewer(env_, *topics_, "viewer1");
  auto r = viewer.cmd(
      "rollout.create",
      {{"name", "x"}, {"model", kModel}, {"version", "1.0.0"}, {"target", {{"type", "all"}}}});
  EXPECT_EQ(r["error"]["code"], "unauthorized") << r.dump();
  auto up = viewer.upload("v-up", "bytes");
  EXPECT_EQ(up["error"]["code"], "unauthorized") << up.dump();
  auto read = viewer.cmd("release.list");
  EXPECT_EQ(read["ok"], true) << read.dump();
  operator_client ghost(env_, *topics_, "ghost");
  auto g = ghost.cmd("release.list");
  EXPECT_EQ(g["error"]["code"], "unauthorized") << g.dump();
}

TEST_F(errors_test, uploads_are_content_addressed_and_bounded) {
  auto a = admin_->upload("img-1", "firmware bytes");
  ASSERT_EQ(a["ok"], true) << a.dump();
  EXPECT_EQ(a["result"]["size"], 14);
  EXPECT_EQ(a["result"]["sha256"],
            "dbf1bce8c5e41be6f0c17880b1ed3033714b384b2c2232b1c7b4f3fda822b6ce")
      << "sha256 of 'firmware bytes'";
  auto b = admin_->upload("img-2", "firmware bytes");
  EXPECT_EQ(b["result"]["sha256"], a["result"]["sha256"]);
  auto empty = admin_->upload("img-3", "");
  EXPECT_EQ(empty["error"]["code"], "bad_request");
  auto sha = a["result"]["sha256"].get<std::string>();
  EXPECT_TRUE(std::filesystem::exists(dir_ / "data" / "images" / sha));

  // A smaller limit: larger images are refused with a message naming it.
  admin_.reset();
  ASSERT_EQ(stop_otterd(), 0);
  start_otterd({{"OTTER_MAX_UPLOAD", "1K"}});
  admin_ = std::make_unique<operator_client>(env_, *topics_, "admin1");
  auto big = admin_->upload("img-4", std::string(2048, 'z'));
  EXPECT_EQ(big["error"]["code"], "bad_request");
  EXPECT_NE(big["error"]["message"].get<std::string>().find("OTTER_MAX_UPLOAD"), std::string::npos);
}

TEST_F(errors_test, paging_walks_every_item_once) {
  for (int i = 0; i < 25; ++i)
    add_release(kModel, "1.0." + std::to_string(i), "img" + std::to_string(i));
  std::set<std::string> seen;
  nlohmann::json args = {{"model", kModel}, {"limit", 10}};
  int pages = 0;
  for (;;) {
    auto r = admin_->cmd("release.list", args);
    ASSERT_EQ(r["ok"], true) << r.dump();
    ++pages;
    for (const auto& it : r["result"]["items"]) EXPECT_TRUE(seen.insert(it["version"]).second);
    if (r["result"]["next"].is_null()) break;
    args["after"] = r["result"]["next"];
  }
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen.size(), 25u);
  auto big = admin_->cmd("release.list", {{"limit", 5000}});
  EXPECT_EQ(big["ok"], true) << "limits above 1000 are clamped, not refused";
}

// The broker replays a retained message on every subscribe, so a retained request would run
// again at each restart of otterd. It runs once when published (MQTT delivers it to a live
// subscription as a plain message); the replays are answered with an error, recorded, not run.
TEST_F(errors_test, retained_messages_replayed_by_the_broker_are_refused_not_run) {
  add_release(kModel, "1.5.0", random_image(1000, 21));
  const auto rollout = create_rollout(kModel, "1.5.0", {{"type", "all"}});
  device d(env_, *topics_, "ret-dev");
  d.connect_started();
  const auto req_topic = topics_->admin_request("admin1");
  const auto res_topic = topics_->admin_response("admin1");
  const auto status_topic = topics_->device_status("ret-dev");
  // The broker outlives this test: leave no retained message behind, whatever happens.
  struct clear_retained {
    peer& op;
    peer& dev;
    std::string req, status;
    ~clear_retained() {
      op.publish(req, "", true);
      dev.publish(status, "", true);
    }
  } cleanup{admin_->mqtt(), d.mqtt(), req_topic, status_topic};

  admin_->mqtt().publish(
      req_topic,
      nlohmann::json{{"id", "ret-1"}, {"cmd", "rollout.pause"}, {"args", {{"id", rollout}}}}.dump(),
      true);
  auto first = admin_->mqtt().wait_json(res_topic, "id", "ret-1");
  ASSERT_TRUE(first);
  EXPECT_EQ((*first)["ok"], true) << first->dump();
  ASSERT_EQ(admin_->cmd("rollout.resume", {{"id", rollout}})["ok"], true);
  d.mqtt().publish(
      status_topic,
      nlohmann::json{
          {"req", "s-ret"}, {"version", "1.0.0"}, {"state", "downloading"}, {"rollout", rollout}}
          .dump(),
      true);
  auto statuses = [&] {
    return admin_->cmd("status.list", {{"device", "ret-dev"}})["result"]["items"].size();
  };
  for (int i = 0; i < 50 && statuses() == 0; ++i) std::this_thread::sleep_for(100ms);
  ASSERT_EQ(statuses(), 1u);

  ASSERT_EQ(stop_otterd(), 0);
  start_otterd();  // subscribes again: the broker replays both retained messages

  auto replay = admin_->mqtt().wait_json(res_topic, "id", "ret-1");
  ASSERT_TRUE(replay) << "no answer to the replayed request";
  EXPECT_EQ((*replay)["ok"], false);
  EXPECT_EQ((*replay)["error"]["code"], "bad_request");
  EXPECT_NE((*replay)["error"]["message"].get<std::string>().find("retain"), std::string::npos);
  auto err = d.wait_error();
  ASSERT_TRUE(err) << "no error for the replayed status";
  EXPECT_EQ((*err)["req"], "s-ret");
  EXPECT_EQ((*err)["code"], "bad_request");

  EXPECT_EQ(admin_->cmd("rollout.get", {{"id", rollout}})["result"]["state"], "active");
  EXPECT_EQ(statuses(), 1u) << "the replayed status was recorded again";
  auto refused = admin_->cmd("events.list", {{"kind", "command"}})["result"]["items"];
  bool recorded = false;
  for (const auto& e : refused)
    recorded = recorded || (e["data"]["id"] == "ret-1" && e["data"]["ok"] == false);
  EXPECT_TRUE(recorded) << refused.dump();
  EXPECT_EQ(
      admin_->cmd("events.list", {{"kind", "error"}, {"device", "ret-dev"}})["result"]["items"]
          .size(),
      1u);
}

// A status naming a rollout of another model than the device's is refused: it would count in
// a rollout the device cannot be part of (operators widen rollouts on those counts).
TEST_F(errors_test, a_status_for_another_models_rollout_is_not_found) {
  add_release("esp8266-other", "2.0.0", random_image(500, 22));
  const auto other = create_rollout("esp8266-other", "2.0.0", {{"type", "all"}});
  device d(env_, *topics_, "dev-m1");
  d.connect_started();
  ASSERT_TRUE(d.check(*pub_, kModel, "1.0.0"));
  auto err = d.send_raw("status",
                        nlohmann::json{{"req", "s-x"},
                                       {"version", "2.0.0"},
                                       {"state", "failed"},
                                       {"error", "x"},
                                       {"rollout", other}}
                            .dump(),
                        topics_->error("dev-m1"));
  ASSERT_TRUE(err);
  EXPECT_EQ((*err)["code"], "not_found") << err->dump();
  EXPECT_EQ((*err)["req"], "s-x");
  auto counts = admin_->cmd("rollout.get", {{"id", other}})["result"]["counts"];
  EXPECT_EQ(counts.value("failed", 0), 0) << counts.dump();
}

TEST_F(errors_test, metrics_and_service_state) {
  peer watcher(env_.mqtt_url, "ms-" + random_hex(3), "viewer1", env_.operator_password);
  watcher.subscribe("ota/v1/service/" + instance_ + "/state");
  watcher.start_connect();
  watcher.wait_connected();
  auto state = watcher.wait("ota/v1/service/" + instance_ + "/state");
  ASSERT_TRUE(state);
  EXPECT_EQ(state->payload, "online");
  EXPECT_TRUE(state->retained);
  auto m = admin_->cmd("metrics.get");
  ASSERT_EQ(m["ok"], true);
  EXPECT_TRUE(m["result"].contains("checks"));
  EXPECT_EQ(m["result"]["db_connected"], true);
}

TEST(otterd_cli, keygen_writes_a_private_key_file_with_mode_0600) {
  auto dir = std::filesystem::temp_directory_path() / ("otter-kg-" + random_hex(4));
  std::filesystem::create_directories(dir);
  auto r = run_command({OTTERD_PATH, "keygen", "--out", (dir / "k.pem").string()});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("BEGIN PUBLIC KEY"), std::string::npos);
  EXPECT_NE(r.output.find("kid: "), std::string::npos);
  struct stat st {};
  ASSERT_EQ(::stat((dir / "k.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  auto again = run_command({OTTERD_PATH, "keygen", "--out", (dir / "k.pem").string()});
  EXPECT_NE(again.status, 0) << "must never overwrite a key";
  std::filesystem::remove_all(dir);
}

TEST(otterd_cli, help_lists_every_variable_and_bad_config_names_it) {
  auto help = run_command({OTTERD_PATH, "--help"});
  EXPECT_EQ(help.status, 0);
  for (const char* v : {"OTTER_MQTT_URL", "OTTER_MQTT_USER", "OTTER_MQTT_PASSWORD", "OTTER_DB_URL",
                        "OTTER_SIGNING_KEY", "OTTER_TOPIC_ROOT", "OTTER_DATA_DIR",
                        "OTTER_OPERATORS", "OTTER_INSTANCE", "OTTER_MANIFEST_TTL",
                        "OTTER_LOG_LEVEL", "OTTER_HTTP_ADDR", "OTTER_PUBLIC_URL"})
    EXPECT_NE(help.output.find(v), std::string::npos) << v;
  auto bad = run_command({OTTERD_PATH}, {{"OTTER_DB_URL", "postgresql://x@127.0.0.1:1/x"},
                                         {"OTTER_SIGNING_KEY", "/nonexistent.pem"},
                                         {"OTTER_MANIFEST_TTL", "soon"}});
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.output.find("OTTER_MANIFEST_TTL"), std::string::npos) << bad.output;
}

// A bad release key file stops otterd before it waits for PostgreSQL: with the database away
// (port 1 here) it would otherwise retry for as long as that takes and never say why.
TEST(otterd_cli, a_bad_release_key_file_stops_otterd_before_it_waits_for_the_database) {
  auto dir = std::filesystem::temp_directory_path() / ("otter-rk-" + random_hex(4));
  std::filesystem::create_directories(dir);
  ASSERT_EQ(run_command({OTTERD_PATH, "keygen", "--out", (dir / "k.pem").string()}).status, 0);
  write_file(dir / "keys.pem", "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n");
  for (const auto& keys : {dir / "keys.pem", dir / "missing.pem"}) {
    child_process otterd({OTTERD_PATH},
                         {{"OTTER_DB_URL", "postgresql://x@127.0.0.1:1/x"},
                          {"OTTER_MQTT_URL", "tcp://127.0.0.1:1"},
                          {"OTTER_SIGNING_KEY", (dir / "k.pem").string()},
                          {"OTTER_DATA_DIR", (dir / "data").string()},
                          {"OTTER_RELEASE_KEYS", keys.string()}},
                         dir / "otterd.log");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (otterd.running() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_FALSE(otterd.running()) << "still running: " << otterd.log_tail();
    EXPECT_EQ(otterd.stop(), 1) << otterd.log_tail();
    const auto log = otterd.log_text();
    EXPECT_NE(log.find("OTTER_RELEASE_KEYS"), std::string::npos) << log;
    EXPECT_EQ(log.find("wait_for_database"), std::string::npos) << log;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace otter::test
