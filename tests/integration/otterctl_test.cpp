// otterctl as an operator runs it: the real binary against otterd and the stack, its --json
// output checked against what the service itself answers.
#include <gtest/gtest.h>

#include <chrono>

#include <filesystem>
#include <sstream>
#include <thread>

#include "crypto/hash.hpp"
#include "support/harness.hpp"

namespace otter::test {
namespace {

using json = nlohmann::json;

const std::string kModel = "esp32-devkitc";

class otterctl_test : public otter_fixture {
 protected:
  run_result ctl(std::vector<std::string> args, const std::string& user = "admin1") {
    args.insert(args.begin(), OTTERCTL_PATH);
    return run_command(args, {{"OTTER_MQTT_URL", env_.mqtt_url},
                              {"OTTER_MQTT_USER", user},
                              {"OTTER_MQTT_PASSWORD", env_.operator_password}});
  }
  // Runs with --json, expects status 0 and one JSON document.
  json ctl_json(std::vector<std::string> args) {
    args.push_back("--json");
    auto r = ctl(args);
    EXPECT_EQ(r.status, 0) << r.output;
    auto j = json::parse(r.output, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.output;
    return j;
  }
};

TEST_F(otterctl_test, upload_releases_and_signing) {
  const auto key_file = (dir_ / "release.pem").string();
  auto kg = ctl_json({"keygen", "--out", key_file});
  ASSERT_TRUE(std::filesystem::exists(key_file));
  auto key = crypto::ec_key::from_private_file(key_file);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(kg["kid"], key->kid());
  // Never overwrites a key.
  EXPECT_EQ(ctl({"keygen", "--out", key_file}).status, 2);

  const std::string bytes = random_hex(50000);
  const auto image = scratch_file("fw-1.1.0.bin", bytes);
  auto rel = ctl_json({"upload", image, "--model", kModel, "--version", "1.1.0", "--notes", "first",
                       "--min-version", "1.0.0", "--sign", key_file});
  EXPECT_EQ(rel["sha256"], crypto::sha256_hex(bytes)) << rel.dump();
  EXPECT_EQ(rel["signed"], true);
  auto got = admin_->cmd("release.get", {{"model", kModel}, {"version", "1.1.0"}});
  ASSERT_EQ(got["ok"], true) << got.dump();
  EXPECT_EQ(got["result"]["sha256"], rel["sha256"]);
  EXPECT_EQ(got["result"]["notes"], "first");
  EXPECT_EQ(got["result"]["min_version"], "1.0.0");

  // sign-image gives the signature a device verifies against the image's SHA-256.
  auto sig = ctl_json({"sign-image", "--key", key_file, image});
  auto raw = crypto::base64url_decode(sig["image_sig"].get<std::string>());
  ASSERT_TRUE(raw);
  const auto d = crypto::sha256(bytes);
  EXPECT_TRUE(key->verify_digest(std::span<const std::uint8_t, 32>(d), *raw));
  auto plain = ctl({"sign-image", "--key", key_file, image});
  EXPECT_EQ(plain.status, 0);
  // ECDSA signatures are randomized: check that the plain one verifies too.
  ASSERT_FALSE(plain.output.empty());
  auto plain_raw = crypto::base64url_decode(plain.output.substr(0, plain.output.size() - 1));
  ASSERT_TRUE(plain_raw) << plain.output;
  EXPECT_TRUE(key->verify_digest(std::span<const std::uint8_t, 32>(d), *plain_raw));

  const auto image2 = scratch_file("fw-1.2.0.bin", random_hex(1000));
  ctl_json({"upload", image2, "--model", kModel, "--version", "1.2.0"});
  ctl_json(
      {"upload", scratch_file("other.bin", "x"), "--model", "other-model", "--version", "1.0.0"});

  auto all = ctl_json({"releases"});
  ASSERT_TRUE(all.is_array());
  EXPECT_EQ(all.size(), 3u);
  auto mine = ctl_json({"releases", "--model", kModel});
  EXPECT_EQ(mine.size(), 2u);
  EXPECT_EQ(ctl_json({"releases", "--limit", "1"}).size(), 1u);
  auto table = ctl({"releases", "--model", kModel});
  EXPECT_EQ(table.status, 0);
  EXPECT_NE(table.output.find("MODEL"), std::string::npos) << table.output;
  EXPECT_NE(table.output.find("1.2.0"), std::string::npos) << table.output;
  EXPECT_EQ(ctl_json({"release", kModel, "1.2.0"}),
            admin_->cmd("release.get", {{"model", kModel}, {"version", "1.2.0"}})["result"]);
  auto one = ctl({"release", kModel, "1.2.0"});
  EXPECT_NE(one.output.find("sha256:"), std::string::npos) << one.output;
  EXPECT_EQ(ctl({"release", kModel, "9.9.9"}).status, 1);
  EXPECT_TRUE(ctl_json({"metrics"}).contains("checks"));

  // The service refuses a release that exists: status 1 and what to do next.
  // Refused before the image is sent (no upload is recorded): a release that exists (1), a bad
  // model or version (2).
  const auto uploads = [&] {
    return admin_->cmd("events.list", {{"kind", "upload"}})["result"]["items"].size();
  };
  const auto uploaded = uploads();
  auto dup = ctl({"upload", image2, "--model", kModel, "--version", "1.2.0+again"});
  EXPECT_EQ(dup.status, 1) << dup.output;
  EXPECT_NE(dup.output.find("conflict: release " + kModel + " 1.2.0 exists already"),
            std::string::npos)
      << dup.output;
  EXPECT_EQ(ctl({"upload", image2, "--model", "a b", "--version", "1.3.0"}).status, 2);
  auto bad_version = ctl({"upload", image2, "--model", kModel, "--version", "v1.3"});
  EXPECT_EQ(bad_version.status, 2);
  EXPECT_NE(bad_version.output.find("not a semantic version"), std::string::npos)
      << bad_version.output;
  EXPECT_EQ(uploads(), uploaded);
}

TEST_F(otterctl_test, rollouts_devices_status_and_events) {
  add_release(kModel, "1.1.0", random_hex(3000));
  add_release(kModel, "1.2.0", random_hex(3000));

  auto r = ctl_json(
      {"rollout", "create", "canary", "--model", kModel, "--version", "1.1.0", "--percent", "10"});
  const std::string id = r["id"];
  auto got = admin_->cmd("rollout.get", {{"id", id}});
  ASSERT_EQ(got["ok"], true) << got.dump();
  EXPECT_EQ(got["result"]["target"]["type"], "percent");
  EXPECT_EQ(got["result"]["name"], "canary");

  auto widened = ctl_json({"rollout", "widen", id, "50"});
  EXPECT_EQ(widened["target"]["percent"], 50) << widened.dump();
  EXPECT_EQ(ctl_json({"rollout", "pause", id, "--reason", "looking"})["state"], "paused");
  EXPECT_EQ(admin_->cmd("rollout.get", {{"id", id}})["result"]["state"], "paused");
  EXPECT_EQ(ctl_json({"rollout", "resume", id})["state"], "active");

  auto dev_rollout = ctl_json({"rollout", "create", "one", "--model", kModel, "--version", "1.2.0",
                               "--devices", "ctl-dev-1,ctl-dev-2"});
  const std::string dev_id = dev_rollout["id"];
  EXPECT_EQ(dev_rollout["target"]["ids"], json::array({"ctl-dev-1", "ctl-dev-2"}));
  auto group = ctl_json({"rollout", "create", "lab", "--model", kModel, "--version", "1.1.0",
                         "--group", "site=lab,ring=1"});
  EXPECT_EQ(group["target"]["attrs"], json({{"site", "lab"}, {"ring", "1"}}));
  auto all = ctl_json({"rollout", "create", "all", "--model", kModel, "--version", "1.1.0", "--all",
                       "--allow-downgrade"});
  EXPECT_EQ(all["allow_downgrade"], true);

  // A device that gets the offer and fails: show counts it and the failure rate.
  device d(env_, *topics_, "ctl-dev-1");
  d.connect_started();
  auto offer = d.check(*pub_, kModel, "1.0.0", {{"site", "lab"}});
  ASSERT_TRUE(offer) << d.last_error.dump();
  EXPECT_EQ(offer->claims["rollout"], dev_id);
  d.status({{"req", "s-1"},
            {"version", "1.2.0"},
            {"state", "failed"},
            {"error", "flash"},
            {"rollout", dev_id}});
  for (int i = 0; i < 100; ++i) {
    auto g = admin_->cmd("rollout.get", {{"id", dev_id}});
    if (g["result"]["counts"].value("failed", 0) == 1) break;
    std::this_thread::sleep_for(50ms);
  }
  auto show = ctl_json({"rollout", "show", dev_id});
  EXPECT_EQ(show["counts"]["offered"], 1) << show.dump();
  EXPECT_EQ(show["counts"]["failed"], 1) << show.dump();
  EXPECT_DOUBLE_EQ(show["failure_rate"].get<double>(), 1.0);
  auto show_text = ctl({"rollout", "show", dev_id});
  EXPECT_EQ(show_text.status, 0);
  EXPECT_NE(show_text.output.find("failure rate: 100.0%"), std::string::npos) << show_text.output;
  EXPECT_TRUE(ctl_json({"rollout", "show", id})["failure_rate"].is_null());

  EXPECT_EQ(ctl_json({"rollout", "cancel", id, "--reason", "done"})["state"], "cancelled");
  auto why = ctl({"rollout", "show", id});
  EXPECT_NE(why.output.find("reason:"), std::string::npos) << why.output;
  EXPECT_NE(why.output.find("done"), std::string::npos) << why.output;
  EXPECT_EQ(ctl_json({"rollouts"}).size(), 4u);
  auto cancelled = ctl_json({"rollouts", "--state", "cancelled"});
  ASSERT_EQ(cancelled.size(), 1u);
  EXPECT_EQ(cancelled[0]["id"], id);
  // The advice fits the conflict: not "it exists already".
  auto resume = ctl({"rollout", "resume", id});
  EXPECT_EQ(resume.status, 1) << resume.output;
  EXPECT_NE(resume.output.find("cancelled rollout stays cancelled"), std::string::npos)
      << resume.output;
  auto listing = ctl({"rollouts"});
  EXPECT_NE(listing.output.find("canary"), std::string::npos) << listing.output;

  auto devices = ctl_json({"devices", "--model", kModel});
  ASSERT_EQ(devices.size(), 1u) << devices.dump();
  EXPECT_EQ(devices[0]["id"], "ctl-dev-1");
  EXPECT_EQ(ctl_json({"devices", "--version", "9.9.9"}).size(), 0u);
  auto dev = ctl_json({"device", "ctl-dev-1"});
  EXPECT_EQ(dev, admin_->cmd("device.get", {{"id", "ctl-dev-1"}})["result"]);
  auto dev_text = ctl({"device", "ctl-dev-1"});
  EXPECT_NE(dev_text.output.find("site=lab"), std::string::npos) << dev_text.output;

  auto status = ctl_json({"status", "--device", "ctl-dev-1"});
  ASSERT_EQ(status.size(), 1u) << status.dump();
  EXPECT_EQ(status[0]["state"], "failed");
  EXPECT_EQ(status[0]["error"], "flash");
  EXPECT_EQ(ctl_json({"status", "--state", "success"}).size(), 0u);

  auto events = ctl_json({"events", "--device", "ctl-dev-1"});
  EXPECT_EQ(events, admin_->cmd("events.list", {{"device", "ctl-dev-1"}})["result"]["items"]);
  EXPECT_EQ(ctl_json({"events", "--kind", "command", "--limit", "3"}).size(), 3u);
  // --since: an age, a UTC time, unix seconds.
  const auto recent = ctl_json({"events", "--device", "ctl-dev-1", "--since", "1h"});
  EXPECT_EQ(recent, events);
  EXPECT_EQ(ctl_json({"events", "--since", "2099-01-01T00:00:00Z"}).size(), 0u);
  EXPECT_EQ(ctl_json({"events", "--device", "ctl-dev-1", "--since", "0"}), events);
  auto bad_since = ctl({"events", "--since", "last tuesday"});
  EXPECT_EQ(bad_since.status, 2);
  EXPECT_NE(bad_since.output.find("an age like 30m"), std::string::npos) << bad_since.output;
  auto events_text = ctl({"events", "--kind", "command"});
  EXPECT_NE(events_text.output.find("rollout.create"), std::string::npos) << events_text.output;
}

TEST_F(otterctl_test, events_follow_prints_live_events_as_json_lines) {
  run_result follow;
  std::thread t([&] {
    follow = ctl({"events", "--follow", "--json", "--kind", "command", "--for", "6"});
  });
  // Keep producing command events while otterctl starts up and subscribes.
  for (int i = 0; i < 12; ++i) {
    std::this_thread::sleep_for(400ms);
    admin_->cmd("release.list");
  }
  t.join();
  EXPECT_EQ(follow.status, 0) << follow.output;
  std::istringstream lines(follow.output);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    auto e = json::parse(line, nullptr, false);
    ASSERT_TRUE(e.is_object()) << "not a JSON line: " << line;
    EXPECT_EQ(e["kind"], "command");
    ++n;
  }
  EXPECT_GE(n, 1) << follow.output;
}

TEST_F(otterctl_test, exit_statuses_and_advice) {
  // Refused by the service: 1.
  auto widen = ctl({"rollout", "widen", "999999", "50"});
  EXPECT_EQ(widen.status, 1) << widen.output;
  EXPECT_NE(widen.output.find("not_found"), std::string::npos) << widen.output;
  auto viewer =
      ctl({"rollout", "create", "x", "--model", kModel, "--version", "1.0.0", "--all"}, "viewer1");
  EXPECT_EQ(viewer.status, 1) << viewer.output;
  EXPECT_NE(viewer.output.find("unauthorized"), std::string::npos) << viewer.output;
  EXPECT_EQ(ctl({"releases"}, "viewer1").status, 0);

  // Usage: 2, and the message says what to do.
  auto bad_flag = ctl({"releases", "--bogus"});
  EXPECT_EQ(bad_flag.status, 2);
  EXPECT_NE(bad_flag.output.find("--help"), std::string::npos) << bad_flag.output;
  EXPECT_EQ(ctl({"rollout", "create", "x", "--model", kModel, "--version", "1.0.0"}).status, 2);
  EXPECT_EQ(ctl({"rollout", "create", "x", "--model", kModel, "--version", "1.0.0", "--all",
                 "--percent", "5"})
                .status,
            2);
  EXPECT_EQ(ctl({"rollout", "widen", "1", "lots"}).status, 2);
  EXPECT_EQ(ctl({"frobnicate"}).status, 2);
  for (const std::vector<std::string>& a :
       {std::vector<std::string>{"rollout", "frob", "1"}, {"rollout", "frob", "--help"}}) {
    auto r = ctl(a);
    EXPECT_EQ(r.status, 2) << r.output;
    EXPECT_NE(r.output.find("unknown rollout subcommand \"frob\""), std::string::npos) << r.output;
  }
  EXPECT_EQ(ctl({}).status, 2);
  EXPECT_EQ(ctl({"upload", "/nonexistent/fw.bin", "--model", "m", "--version", "1.0.0"}).status, 2);

  // Help on every level: 0.
  for (const std::vector<std::string>& h : {std::vector<std::string>{"--help"},
                                            {"rollout", "--help"},
                                            {"rollout", "create", "--help"},
                                            {"events", "-h"},
                                            {"upload", "--help"}}) {
    auto r = ctl(h);
    EXPECT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("Usage"), std::string::npos) << r.output;
  }

  // No broker there: 2.
  auto nobroker = ctl({"releases", "--mqtt", "tcp://127.0.0.1:1", "--timeout", "2"});
  EXPECT_EQ(nobroker.status, 2) << nobroker.output;
  EXPECT_NE(nobroker.output.find("cannot connect"), std::string::npos) << nobroker.output;

  // Wrong password: 2 at once (retrying cannot mend it), saying what is wrong.
  const auto t0 = std::chrono::steady_clock::now();
  auto refused = run_command({OTTERCTL_PATH, "releases", "--timeout", "20"},
                             {{"OTTER_MQTT_URL", env_.mqtt_url},
                              {"OTTER_MQTT_USER", "admin1"},
                              {"OTTER_MQTT_PASSWORD", "not-the-password"}});
  EXPECT_EQ(refused.status, 2) << refused.output;
  EXPECT_NE(refused.output.find("refused user admin1: wrong user name or password"),
            std::string::npos)
      << refused.output;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10))
      << "waited out the timeout";

  // Broker but no otterd: 2 with the documented advice.
  EXPECT_EQ(stop_otterd(), 0);
  auto silent = ctl({"releases", "--timeout", "1"});
  EXPECT_EQ(silent.status, 2) << silent.output;
  EXPECT_NE(
      silent.output.find("no answer from otterd within 1 s: is otterd running and connected to " +
                         env_.mqtt_url + "?"),
      std::string::npos)
      << silent.output;
}

}  // namespace
}  // namespace otter::test
