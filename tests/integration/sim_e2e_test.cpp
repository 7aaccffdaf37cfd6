// otter-sim end to end: the real binary's devices take an update from otterd over MQTT chunks
// and over HTTP links, and what the simulator reports agrees with the service's own records.
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>

#include "crypto/hash.hpp"
#include "support/harness.hpp"
#include "support/net.hpp"

namespace otter::test {
namespace {

using json = nlohmann::json;

const std::string kModel = "esp32-sim";

class sim_e2e_test : public otter_fixture {
 protected:
  void SetUp() override {
    otter_fixture::SetUp();
    pubkey_file_ = (dir_ / "service-pub.pem").string();
    std::ofstream(pubkey_file_) << pub_->public_pem();
  }

  // Restarts otterd with HTTP download on a fresh port, plus `extra`.
  void restart_with_http(std::map<std::string, std::string> extra = {}) {
    const auto port = std::to_string(free_port());
    extra["OTTER_HTTP_ADDR"] = "127.0.0.1:" + port;
    extra["OTTER_PUBLIC_URL"] = "http://127.0.0.1:" + port;
    admin_.reset();
    ASSERT_EQ(stop_otterd(), 0);
    start_otterd(extra);
    admin_ = std::make_unique<operator_client>(env_, *topics_, "admin1");
  }

  // Runs otter-sim to the goal `until` and returns its exit status and JSON summary.
  std::pair<int, json> run_sim(int devices, const std::string& prefix, const std::string& until,
                               std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {OTTER_SIM_PATH,
                                     "--devices",
                                     std::to_string(devices),
                                     "--model",
                                     kModel,
                                     "--version",
                                     "1.0.0",
                                     "--pubkey",
                                     pubkey_file_,
                                     "--mqtt",
                                     env_.mqtt_url,
                                     "--prefix",
                                     prefix,
                                     "--interval",
                                     "1",
                                     "--until-version",
                                     until,
                                     "--timeout",
                                     "60",
                                     "--json-summary"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    const auto r = run_command(argv);
    // stdout and stderr arrive together: the summary is the one line that is a JSON object.
    std::istringstream lines(r.output);
    json summary;
    for (std::string line; std::getline(lines, line);) {
      if (!line.starts_with("{")) continue;
      auto j = json::parse(line, nullptr, false);
      if (j.is_object() && j.contains("devices")) summary = std::move(j);
    }
    EXPECT_TRUE(summary.is_object()) << r.output;
    output_ = r.output;
    return {r.status, summary};
  }

  // Every page of status.list for `args`.
  std::vector<json> status_reports(json args) {
    std::vector<json> all;
    args["limit"] = 1000;
    for (;;) {
      const auto page = admin_->cmd("status.list", args);
      EXPECT_EQ(page["ok"], true) << page.dump();
      if (page["ok"] != true) break;
      for (const auto& it : page["result"]["items"]) all.push_back(it);
      if (page["result"]["next"].is_null()) break;
      args["after"] = page["result"]["next"];
    }
    return all;
  }

  std::string pubkey_file_;
  std::string output_;
};

TEST_F(sim_e2e_test, twenty_devices_reach_the_new_version_by_mqtt_chunks) {
  const std::string image = random_hex(40000);  // 80 KB: 20 chunks of 4 KiB each
  add_release(kModel, "1.1.0", image);
  const auto rollout = create_rollout(kModel, "1.1.0", {{"type", "all"}});
  const std::string prefix = "e2e" + random_hex(3);

  const auto [status, summary] = run_sim(20, prefix, "1.1.0");
  ASSERT_EQ(status, 0) << output_;
  EXPECT_EQ(summary["devices"], 20);
  EXPECT_EQ(summary["goal"]["reached"], true);
  EXPECT_EQ(summary["versions"], json({{"1.1.0", 20}}));
  EXPECT_EQ(summary["download"], true);
  EXPECT_EQ(summary["download_ms"]["count"], 20) << summary.dump();

  // The service saw the same: one success per device, from exactly these devices.
  const auto successes = status_reports({{"rollout", rollout}, {"state", "success"}});
  std::set<std::string> devices;
  for (const auto& s : successes) {
    EXPECT_EQ(s["version"], "1.1.0");
    devices.insert(s["device"].get<std::string>());
  }
  EXPECT_EQ(successes.size(), 20u);
  EXPECT_EQ(devices.size(), 20u);
  for (const auto& d : devices) EXPECT_TRUE(d.starts_with(prefix + "-")) << d;

  // Every report the simulator says it sent was recorded.
  const auto all = status_reports({{"rollout", rollout}});
  std::size_t sent = 0;
  for (const auto& [state, n] : summary["statuses"].items()) sent += n.get<std::size_t>();
  EXPECT_EQ(all.size(), sent) << summary["statuses"].dump();

  const auto got = admin_->cmd("rollout.get", {{"id", rollout}});
  ASSERT_EQ(got["ok"], true) << got.dump();
  EXPECT_EQ(got["result"]["counts"]["success"], 20) << got.dump();
  EXPECT_EQ(got["result"]["counts"]["offered"], 20) << got.dump();

  const auto listed = admin_->cmd("device.list", {{"model", kModel}, {"version", "1.1.0"}});
  ASSERT_EQ(listed["ok"], true);
  EXPECT_EQ(listed["result"]["items"].size(), 20u);
}

TEST_F(sim_e2e_test, devices_download_by_http_and_check_the_release_signature) {
  const auto release = crypto::ec_key::generate();
  const auto keys = dir_ / "release-keys.pem";
  std::ofstream(keys) << release.public_pem();
  restart_with_http({{"OTTER_RELEASE_KEYS", keys.string()}, {"OTTER_REQUIRE_SIGNED", "1"}});

  const std::string image = random_hex(100000);
  const auto sig = crypto::base64url_encode(release.sign(image));
  add_release(kModel, "1.2.0", image, {{"image_sig", sig}});
  const auto rollout = create_rollout(kModel, "1.2.0", {{"type", "all"}});

  // Devices pinning the right release key install it.
  const auto release_pub = (dir_ / "release-pub.pem").string();
  std::ofstream(release_pub) << release.public_pem();
  const auto [ok_status, ok] =
      run_sim(5, "http" + random_hex(3), "1.2.0", {"--via", "http", "--release-key", release_pub});
  ASSERT_EQ(ok_status, 0) << output_;
  EXPECT_EQ(ok["versions"], json({{"1.2.0", 5}}));
  EXPECT_EQ(ok["download_ms"]["count"], 5) << ok.dump();
  EXPECT_TRUE(!ok["errors"].contains("http")) << ok.dump();

  // Devices pinning another release key refuse the image: they report failed, never install,
  // and the simulator gives up at its timeout with status 1.
  const auto wrong_pub = (dir_ / "wrong-pub.pem").string();
  std::ofstream(wrong_pub) << crypto::ec_key::generate().public_pem();
  const std::string bad_prefix = "bad" + random_hex(3);
  const auto [bad_status, bad] = run_sim(
      2, bad_prefix, "1.2.0", {"--via", "http", "--release-key", wrong_pub, "--timeout", "4"});
  EXPECT_EQ(bad_status, 1) << output_;
  EXPECT_EQ(bad["versions"], json({{"1.0.0", 2}})) << bad.dump();
  EXPECT_GE(bad["errors"].value("image_sig", 0), 2) << bad.dump();
  const auto failed = status_reports({{"rollout", rollout}, {"state", "failed"}});
  ASSERT_FALSE(failed.empty());
  for (const auto& f : failed) {
    EXPECT_TRUE(f["device"].get<std::string>().starts_with(bad_prefix)) << f.dump();
    EXPECT_NE(f["error"].get<std::string>().find("image_sig"), std::string::npos) << f.dump();
  }
}

TEST_F(sim_e2e_test, via_http_without_http_download_fails_clearly) {
  add_release(kModel, "1.3.0", random_hex(1000));
  create_rollout(kModel, "1.3.0", {{"type", "all"}});
  const auto [status, summary] =
      run_sim(1, "nourl" + random_hex(3), "1.3.0", {"--via", "http", "--timeout", "3"});
  EXPECT_EQ(status, 1) << output_;
  EXPECT_GE(summary["errors"].value("no_url", 0), 1) << summary.dump();
}

}  // namespace
}  // namespace otter::test
