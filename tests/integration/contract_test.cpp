// What the running service really sends, validated against topics/schemas with a real JSON
// Schema validator: the machine-readable contract and the code cannot drift apart.
#include <gtest/gtest.h>

#include <fstream>

#include "crypto/hash.hpp"
#include "support/harness.hpp"

namespace otter::test {
namespace {

class contract_test : public otter_fixture {
 protected:
  void capture(const std::string& schema, const nlohmann::json& j) {
    ASSERT_FALSE(j.is_string() && j == "no answer") << schema;
    std::ofstream(out_ / (schema + "--" + std::to_string(++n_) + ".json")) << j.dump(2);
  }
  void capture_response(const nlohmann::json& r, const std::string& result_schema) {
    capture("admin-response", r);
    EXPECT_EQ(r.value("ok", false), true) << r.dump();
    if (!result_schema.empty() && r.contains("result")) capture(result_schema, r["result"]);
    if (r.contains("result") && r["result"].contains("items") && !result_schema.empty()) {
      // result_schema is "page"; items go to item_schema_
      for (const auto& it : r["result"]["items"]) capture(item_schema_, it);
    }
  }
  std::filesystem::path out_;
  std::string item_schema_;
  int n_ = 0;
};

nlohmann::json decode_part(const std::string& jws, int part) {
  std::size_t a = 0;
  for (int i = 0; i < part; ++i) a = jws.find('.', a) + 1;
  const auto b = jws.find('.', a);
  auto bytes = crypto::base64url_decode(jws.substr(a, b - a)).value();
  return nlohmann::json::parse(std::string(bytes.begin(), bytes.end()));
}

TEST_F(contract_test, every_message_the_service_sends_matches_its_schema) {
  out_ = dir_ / "captured";
  std::filesystem::create_directories(out_);
  const std::string model = "esp32-devkitc";
  peer watcher(env_.mqtt_url, "ct-" + random_hex(3), "admin1", env_.operator_password);
  watcher.subscribe("ota/v1/events/#");
  watcher.subscribe("ota/v1/service/metrics");
  watcher.start_connect();
  watcher.wait_connected();

  auto up = admin_->upload("ct-img", std::string(5000, 'q'));
  capture("upload-response", up);
  auto rel = admin_->cmd(
      "release.add",
      {{"model", model}, {"version", "1.1.0"}, {"sha256", up["result"]["sha256"]}, {"notes", "n"}});
  capture_response(rel, "release");
  auto ro = admin_->cmd("rollout.create", {{"name", "c"},
                                           {"model", model},
                                           {"version", "1.1.0"},
                                           {"target", {{"type", "percent"}, {"percent", 100}}}});
  capture_response(ro, "rollout");
  const std::string rid = ro["result"]["id"];

  device d(env_, *topics_, "ct-dev");
  device u(env_, *topics_, "ct-up");
  d.connect_started();
  u.connect_started();
  auto o = d.check(*pub_, model, "1.0.0", {{"site", "x"}});
  ASSERT_TRUE(o);
  capture("offer", o->answer);
  capture("manifest-header", decode_part(o->answer["manifest"], 0));
  capture("manifest-claims", o->claims);
  auto none = u.check(*pub_, "other-model", "1.0.0");
  ASSERT_TRUE(none);
  capture("offer", none->answer);
  capture("manifest-claims", none->claims);
  d.status({{"req", "s-1"}, {"version", "1.1.0"}, {"state", "success"}, {"rollout", rid}});
  auto err = d.send_raw("check", "{}", topics_->error("ct-dev"));
  ASSERT_TRUE(err);
  capture("error", *err);

  capture_response(admin_->cmd("rollout.get", {{"id", rid}}), "rollout");
  capture_response(admin_->cmd("release.get", {{"model", model}, {"version", "1.1.0"}}), "release");
  capture_response(admin_->cmd("device.get", {{"id", "ct-dev"}}), "device");
  item_schema_ = "release";
  capture_response(admin_->cmd("release.list"), "page");
  item_schema_ = "rollout";
  capture_response(admin_->cmd("rollout.list"), "page");
  item_schema_ = "device";
  capture_response(admin_->cmd("device.list"), "page");
  item_schema_ = "status-report";
  capture_response(admin_->cmd("status.list"), "page");
  item_schema_ = "event";
  capture_response(admin_->cmd("events.list", {{"limit", 50}}), "page");
  capture_response(admin_->cmd("metrics.get"), "service-metrics");
  capture("admin-response", admin_->cmd("rollout.get", {{"id", "999999"}}));
  capture("admin-response", admin_->raw("{oops", ""));

  for (const char* kind : {"check", "offer", "status", "error", "command", "upload"}) {
    auto ev = watcher.wait(std::string("ota/v1/events/") + kind);
    ASSERT_TRUE(ev) << kind;
    capture("event", nlohmann::json::parse(ev->payload));
  }
  auto metrics = watcher.wait("ota/v1/service/metrics", 15s);
  ASSERT_TRUE(metrics);
  capture("service-metrics", nlohmann::json::parse(metrics->payload));

  auto r = run_command(
      {"node", OTTER_SOURCE_DIR "/tests/schema/validate_files.js", OTTER_SOURCE_DIR, out_.string()},
      {{"NODE_PATH", "/usr/share/nodejs"}});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find(" 0 failed"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace otter::test
