// The Node-RED flow of compose/node-red in a real Node-RED runtime, on the events a real otterd
// publishes: devices take a rollout, some fail, and the flow's "rollout health" function must
// summarise every report and raise its alert once, past 10 % failures among >= 20 devices.
// tests/dashboards/node_red_flow.js checks the same function without Node-RED; this checks
// that Node-RED loads the flow, that its MQTT node may subscribe with an operator's account
// under the broker's ACL, and that otterd's events reach it as the function expects.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "support/child_process.hpp"
#include "support/harness.hpp"

namespace otter::test {
namespace {

const std::string kModel = "esp32-devkitc";

class node_red_test : public otter_fixture {};

TEST_F(node_red_test, flow_summarises_otterd_status_events_and_alerts_once) {
  const char* deps = std::getenv("OTTER_NODE_RED_DIR");
  if (!deps || !std::filesystem::exists(std::filesystem::path(deps) / "node_modules/node-red"))
    GTEST_SKIP() << "Node-RED is not installed: scripts/test.sh installs it (npm ci of "
                    "tests/dashboards/node-red) and sets OTTER_NODE_RED_DIR";
  // tcp://host:port
  const auto& url = env_.mqtt_url;
  const auto colon = url.rfind(':');
  const std::string host = url.substr(6, colon - 6);
  const std::string port = url.substr(colon + 1);

  child_process red(
      {"node", std::string(OTTER_SOURCE_DIR) + "/tests/dashboards/node_red_runtime.js",
       OTTER_SOURCE_DIR, deps, host, port, "viewer1"},
      {{"OTTER_NODE_RED_MQTT_PASSWORD", env_.operator_password}}, dir_ / "node-red.log");
  ASSERT_TRUE(red.wait_for_log({"ready"}, 60s)) << red.log_tail();

  add_release(kModel, "1.1.0", std::string(2000, 'r'));
  const auto rid = create_rollout(kModel, "1.1.0", {{"type", "all"}});
  constexpr int kDevices = 20;
  constexpr int kFailed = 3;  // 15 %: past the flow's 10 %
  std::vector<std::unique_ptr<device>> fleet;
  for (int i = 0; i < kDevices; ++i) {
    fleet.push_back(std::make_unique<device>(env_, *topics_, "nr-" + std::to_string(i)));
    fleet.back()->mqtt().start_connect();
  }
  for (int i = 0; i < kDevices; ++i) {
    auto& d = *fleet[i];
    d.connect_started();
    auto o = d.check(*pub_, kModel, "1.0.0");
    ASSERT_TRUE(o && o->answer["update"] == true) << d.last_error.dump();
    if (i < kFailed)
      d.status(
          {{"version", "1.1.0"}, {"state", "failed"}, {"error", "flash write"}, {"rollout", rid}});
    else
      d.status({{"version", "1.1.0"}, {"state", "success"}, {"rollout", rid}});
  }

  const std::string alert = "rollout " + rid + ": 3 of 20 devices failed or rolled back (15.0 %)";
  ASSERT_TRUE(red.wait_for_log({alert}, 30s)) << red.log_tail();
  // The last summary counts every device; exactly one alert.
  ASSERT_TRUE(red.wait_for_log({"\"reported\":20,"}, 10s)) << red.log_tail();
  std::istringstream lines(red.log_text());
  int summaries = 0, alerts = 0;
  nlohmann::json last;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] != '{') continue;
    const auto j = nlohmann::json::parse(line);
    if (j["node"] == "summary") {
      ++summaries;
      last = j["payload"];
    } else if (j["node"] == "alert") {
      ++alerts;
    }
  }
  EXPECT_EQ(summaries, kDevices);
  EXPECT_EQ(alerts, 1);
  EXPECT_EQ(last["rollout"], rid);
  EXPECT_EQ(last["counts"]["failed"], kFailed);
  EXPECT_EQ(last["counts"]["success"], kDevices - kFailed);
  EXPECT_EQ(red.stop(), 0) << red.log_tail();
}

}  // namespace
}  // namespace otter::test
