// otterd end to end on the real broker and database: devices check in and report.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <pqxx/pqxx>
#include <set>
#include <sstream>
#include <thread>

#include "rollout/bucket.hpp"
#include "support/harness.hpp"

namespace otter::test {
namespace {

const std::string kModel = "esp32-devkitc";

class devices_test : public otter_fixture {
 protected:
  // An operator connection subscribed to every event topic.
  std::unique_ptr<peer> event_watcher() {
    auto w = std::make_unique<peer>(env_.mqtt_url, "watch-" + random_hex(3), "admin1",
                                    env_.operator_password);
    w->subscribe("ota/v1/events/#");
    w->start_connect();
    w->wait_connected();
    return w;
  }
};

TEST_F(devices_test, up_to_date_answer_is_signed_with_exactly_the_no_update_claims) {
  device d(env_, *topics_, "dev-a");
  d.connect_started();
  auto o = d.check(*pub_, kModel, "1.0.0");
  ASSERT_TRUE(o) << d.last_error.dump();
  EXPECT_TRUE(o->signature_ok);
  EXPECT_EQ(o->answer["update"], false);
  EXPECT_EQ(o->header["alg"], "ES256");
  EXPECT_EQ(o->header["typ"], "otter-manifest");
  EXPECT_EQ(o->header["kid"], key_->kid());
  std::set<std::string> keys;
  for (const auto& [k, v] : o->claims.items()) keys.insert(k);
  EXPECT_EQ(keys, (std::set<std::string>{"sub", "nonce", "iat", "exp", "update", "retry_s"}));
  EXPECT_EQ(o->claims["sub"], "dev-a");
  EXPECT_EQ(o->claims["exp"].get<long long>() - o->claims["iat"].get<long long>(), 3600);
}

TEST_F(devices_test, offer_carries_the_protocol_claims) {
  const std::string image(3000, 'x');
  auto rel = add_release(kModel, "1.1.0", image);
  const auto rid = create_rollout(kModel, "1.1.0", {{"type", "all"}});
  device d(env_, *topics_, "dev-b");
  d.connect_started();
  auto o = d.check(*pub_, kModel, "1.0.0");
  ASSERT_TRUE(o) << d.last_error.dump();
  ASSERT_TRUE(o->signature_ok);
  EXPECT_EQ(o->answer["update"], true);
  const auto& c = o->claims;
  EXPECT_EQ(c["sub"], "dev-b");
  EXPECT_EQ(c["update"], true);
  EXPECT_EQ(c["model"], kModel);
  EXPECT_EQ(c["version"], "1.1.0");
  EXPECT_EQ(c["from"], "1.0.0");
  EXPECT_EQ(c["size"], 3000);
  EXPECT_EQ(c["sha256"], rel["sha256"]);
  EXPECT_EQ(c["rollout"], rid);
  EXPECT_EQ(c["chunk"]["file"], rel["sha256"].get<std::string>().substr(0, 16));
  EXPECT_EQ(c["chunk"]["max"], 4096);
  EXPECT_EQ(c["chunk"]["window"], 16);
  EXPECT_FALSE(c.contains("downgrade"));
  // The device now runs it: nothing more to offer.
  auto again = d.check(*pub_, kModel, "1.1.0");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->answer["update"], false);
}

TEST_F(devices_test, canary_set_equals_the_buckets_and_widening_keeps_every_device) {
  add_release(kModel, "2.0.0", std::string(100, 'a'));
  const auto rid = create_rollout(kModel, "2.0.0", {{"type", "percent"}, {"percent", 30}});
  std::vector<std::unique_ptr<device>> fleet;
  for (int i = 0; i < 200; ++i)
    fleet.push_back(std::make_unique<device>(env_, *topics_, "cn-" + std::to_string(i)));
  for (auto& d : fleet) d->connect_started();

  auto offered_at = [&](std::uint32_t bp) {
    std::set<std::string> offered, expected;
    for (auto& d : fleet) {
      auto o = d->check(*pub_, kModel, "1.0.0");
      EXPECT_TRUE(o && o->signature_ok) << d->id();
      if (o && o->answer["update"] == true) offered.insert(d->id());
      if (rollout::bucket(rid, d->id()) < bp) expected.insert(d->id());
    }
    EXPECT_EQ(offered, expected);
    return offered;
  };
  auto at30 = offered_at(3000);
  EXPECT_GT(at30.size(), 30u);
  EXPECT_LT(at30.size(), 90u);

  auto w = admin_->cmd("rollout.update", {{"id", rid}, {"percent", 60}});
  ASSERT_EQ(w["ok"], true) << w.dump();
  auto at60 = offered_at(6000);
  for (const auto& id : at30) EXPECT_TRUE(at60.count(id)) << id << " left the canary";
  EXPECT_GT(at60.size(), at30.size());

  // Narrowing: only the devices under the new percent are offered it; the counts keep the
  // devices offered before.
  auto narrow = admin_->cmd("rollout.update", {{"id", rid}, {"percent", 10}});
  ASSERT_EQ(narrow["ok"], true) << narrow.dump();
  auto at10 = offered_at(1000);
  for (const auto& id : at10) EXPECT_TRUE(at30.count(id)) << id << " was not in the canary";
  EXPECT_LT(at10.size(), at30.size());
  auto got = admin_->cmd("rollout.get", {{"id", rid}});
  EXPECT_EQ(got["result"]["counts"]["offered"], at60.size()) << got.dump();
}

TEST_F(devices_test, pause_resume_and_cancel_take_effect_for_the_next_check) {
  add_release(kModel, "1.2.0", "image");
  const auto rid = create_rollout(kModel, "1.2.0", {{"type", "all"}});
  device d(env_, *topics_, "dev-p");
  d.connect_started();
  EXPECT_EQ(d.check(*pub_, kModel, "1.0.0")->answer["update"], true);
  ASSERT_EQ(admin_->cmd("rollout.pause", {{"id", rid}, {"reason", "bad batch"}})["ok"], true);
  EXPECT_EQ(d.check(*pub_, kModel, "1.0.0")->answer["update"], false);
  ASSERT_EQ(admin_->cmd("rollout.resume", {{"id", rid}})["ok"], true);
  EXPECT_EQ(d.check(*pub_, kModel, "1.0.0")->answer["update"], true);
  auto c = admin_->cmd("rollout.cancel", {{"id", rid}});
  ASSERT_EQ(c["ok"], true);
  EXPECT_EQ(c["result"]["state"], "cancelled");
  EXPECT_EQ(d.check(*pub_, kModel, "1.0.0")->answer["update"], false);
  auto resume = admin_->cmd("rollout.resume", {{"id", rid}});
  EXPECT_EQ(resume["error"]["code"], "conflict");
}

TEST_F(devices_test, min_version_prerelease_and_highest_version_rules) {
  add_release(kModel, "1.1.0-rc.1", "rc1");
  add_release(kModel, "1.1.0", "final", {{"min_version", "1.0.5"}});
  create_rollout(kModel, "1.1.0-rc.1", {{"type", "all"}});
  create_rollout(kModel, "1.1.0", {{"type", "all"}});
  device d(env_, *topics_, "dev-m");
  d.connect_started();
  // 1.0.0 is below min_version of 1.1.0: only the release candidate is allowed.
  EXPECT_EQ(d.check(*pub_, kModel, "1.0.0")->claims["version"], "1.1.0-rc.1");
  // 1.0.5 may take 1.1.0, the highest.
  EXPECT_EQ(d.check(*pub_, kModel, "1.0.5")->claims["version"], "1.1.0");
  // A device on the release candidate moves on to the final release.
  EXPECT_EQ(d.check(*pub_, kModel, "1.1.0-rc.1")->claims["version"], "1.1.0");
  // Other models never see these.
  EXPECT_EQ(d.check(*pub_, "esp8266-other", "0.1.0")->answer["update"], false);
}

TEST_F(devices_test, downgrade_only_when_the_rollout_allows_it) {
  add_release(kModel, "1.0.0", "old");
  create_rollout(kModel, "1.0.0", {{"type", "all"}});
  device d(env_, *topics_, "dev-d");
  d.connect_started();
  EXPECT_EQ(d.check(*pub_, kModel, "1.5.0")->answer["update"], false);
  create_rollout(kModel, "1.0.0", {{"type", "devices"}, {"ids", {"dev-d"}}}, true);
  auto o = d.check(*pub_, kModel, "1.5.0");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->answer["update"], true);
  EXPECT_EQ(o->claims["version"], "1.0.0");
  EXPECT_EQ(o->claims["downgrade"], true);
  EXPECT_EQ(o->claims["from"], "1.5.0");
}

TEST_F(devices_test, group_and_device_list_targets) {
  add_release(kModel, "3.0.0", "g");
  create_rollout(kModel, "3.0.0", {{"type", "group"}, {"attrs", {{"site", "north"}}}});
  device a(env_, *topics_, "grp-a");
  device b(env_, *topics_, "grp-b");
  a.connect_started();
  b.connect_started();
  EXPECT_EQ(a.check(*pub_, kModel, "1.0.0", {{"site", "north"}})->answer["update"], true);
  EXPECT_EQ(b.check(*pub_, kModel, "1.0.0", {{"site", "south"}})->answer["update"], false);
  // Attributes are remembered when a later check does not send them.
  EXPECT_EQ(a.check(*pub_, kModel, "1.0.0")->answer["update"], true);
}

TEST_F(devices_test, status_reports_are_recorded_attributed_and_counted) {
  add_release(kModel, "1.1.0", "payload");
  const auto rid = create_rollout(kModel, "1.1.0", {{"type", "all"}});
  device d(env_, *topics_, "dev-s");
  d.connect_started();
  ASSERT_EQ(d.check(*pub_, kModel, "1.0.0")->answer["update"], true);
  d.status({{"req", "s-1"},
            {"version", "1.1.0"},
            {"state", "downloading"},
            {"progress", 50},
            {"rollout", rid}});
  d.status({{"req", "s-2"}, {"version", "1.1.0"}, {"state", "installing"}});  // no rollout
  d.status({{"req", "s-3"}, {"version", "1.1.0"}, {"state", "success"}, {"rollout", rid}});
  std::this_thread::sleep_for(300ms);
  auto list = admin_->cmd("status.list", {{"device", "dev-s"}});
  ASSERT_EQ(list["ok"], true) << list.dump();
  const auto& items = list["result"]["items"];
  ASSERT_EQ(items.size(), 3u) << list.dump();
  EXPECT_EQ(items[0]["state"], "success");  // newest first
  EXPECT_EQ(items[1]["state"], "installing");
  EXPECT_EQ(items[1]["rollout"], rid);  // attributed to the latest offer of that version
  EXPECT_EQ(items[2]["progress"], 50);
  auto dev = admin_->cmd("device.get", {{"id", "dev-s"}});
  EXPECT_EQ(dev["result"]["version"], "1.1.0");
  auto counts = admin_->cmd("rollout.get", {{"id", rid}})["result"]["counts"];
  EXPECT_EQ(counts["success"], 1);
  EXPECT_EQ(counts["offered"], 1);
  // Back on the old version after success: counted rolled_back.
  ASSERT_TRUE(d.check(*pub_, kModel, "1.0.0"));
  counts = admin_->cmd("rollout.get", {{"id", rid}})["result"]["counts"];
  EXPECT_EQ(counts["rolled_back"], 1) << counts.dump();
  EXPECT_EQ(counts["success"], 0);
  // Its report names the release rolled back, as a device's own report would.
  auto reports = admin_->cmd("status.list", {{"device", "dev-s"}, {"state", "rolled_back"}});
  ASSERT_EQ(reports["result"]["items"].size(), 1u) << reports.dump();
  EXPECT_EQ(reports["result"]["items"][0]["version"], "1.1.0");
  EXPECT_EQ(reports["result"]["items"][0]["rollout"], rid);
  EXPECT_NE(reports["result"]["items"][0]["error"].get<std::string>().find("checked in with 1.0.0"),
            std::string::npos);
}

// Versions may be 128 characters each; the derived report's error text must still fit the
// 256 a status error may have, or the database refused it and dropped the check's records.
TEST_F(devices_test, a_rollback_between_the_longest_versions_is_recorded) {
  const std::string high = "1.0.0-" + std::string(122, 'a');
  const std::string low = "0.9.0-" + std::string(122, 'b');
  ASSERT_EQ(high.size(), 128u);
  add_release(kModel, high, "long payload");
  auto created = admin_->cmd(
      "rollout.create",
      {{"name", "long"}, {"model", kModel}, {"version", high}, {"target", {{"type", "all"}}}});
  ASSERT_EQ(created["ok"], true) << created.dump();
  const std::string rid = created["result"]["id"];
  device d(env_, *topics_, "dev-long");
  d.connect_started();
  ASSERT_EQ(d.check(*pub_, kModel, low)->answer["update"], true);
  d.status({{"req", "s-1"}, {"version", high}, {"state", "success"}, {"rollout", rid}});
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(d.check(*pub_, kModel, low));
  auto reports = admin_->cmd("status.list", {{"device", "dev-long"}, {"state", "rolled_back"}});
  ASSERT_EQ(reports["result"]["items"].size(), 1u) << reports.dump();
  EXPECT_EQ(reports["result"]["items"][0]["error"].get<std::string>().size(), 256u);
  auto checks = admin_->cmd("events.list", {{"device", "dev-long"}, {"kind", "check"}});
  EXPECT_EQ(checks["result"]["items"].size(), 2u) << "the check's own events were lost";
  EXPECT_EQ(admin_->cmd("device.get", {{"id", "dev-long"}})["result"]["version"], low);
}

// PROTOCOL.md: build metadata is ignored in identity, device.list's version filter included.
TEST_F(devices_test, device_list_finds_a_version_by_its_identity) {
  device a(env_, *topics_, "dev-b7");
  device b(env_, *topics_, "dev-plain");
  device c(env_, *topics_, "dev-rc");
  for (auto* d : {&a, &b, &c}) d->connect_started();
  ASSERT_TRUE(a.check(*pub_, kModel, "1.0.0+b7"));
  ASSERT_TRUE(b.check(*pub_, kModel, "1.0.0"));
  ASSERT_TRUE(c.check(*pub_, kModel, "1.0.0-rc.1"));
  auto ids = [&](const std::string& version) {
    std::set<std::string> out;
    auto r = admin_->cmd("device.list", {{"version", version}});
    EXPECT_EQ(r["ok"], true) << r.dump();
    for (const auto& d : r["result"]["items"]) out.insert(d["id"].get<std::string>());
    return out;
  };
  const std::set<std::string> both{"dev-b7", "dev-plain"};
  EXPECT_EQ(ids("1.0.0"), both);
  EXPECT_EQ(ids("1.0.0+b9"), both);
  EXPECT_EQ(ids("1.0.0-rc.1"), std::set<std::string>{"dev-rc"});
  auto bad = admin_->cmd("device.list", {{"version", "x"}});
  EXPECT_EQ(bad["error"]["code"], "bad_request") << bad.dump();
}

TEST_F(devices_test, events_are_published_and_listed_newest_first) {
  auto watcher_ptr = event_watcher();
  auto& watcher = *watcher_ptr;
  device d(env_, *topics_, "dev-e");
  d.connect_started();
  ASSERT_TRUE(d.check(*pub_, kModel, "1.0.0"));
  auto ev = watcher.wait("ota/v1/events/check");
  ASSERT_TRUE(ev);
  auto j = nlohmann::json::parse(ev->payload);
  EXPECT_EQ(j["device"], "dev-e");
  EXPECT_EQ(j["kind"], "check");
  auto list = admin_->cmd("events.list", {{"device", "dev-e"}});
  ASSERT_EQ(list["ok"], true);
  ASSERT_GE(list["result"]["items"].size(), 2u);
  EXPECT_EQ(list["result"]["items"][0]["kind"], "offer");
  EXPECT_EQ(list["result"]["items"][1]["kind"], "check");
}

TEST_F(devices_test, otter_events_limits_what_is_published_not_what_is_recorded) {
  stop_otterd();
  start_otterd({{"OTTER_EVENTS", "status,command"}});
  auto watcher_ptr = event_watcher();
  auto& watcher = *watcher_ptr;
  device d(env_, *topics_, "dev-q");
  d.connect_started();
  ASSERT_TRUE(d.check(*pub_, kModel, "1.0.0"));
  d.status({{"version", "1.0.0"}, {"state", "downloading"}});
  // The status event comes out; the check and offer before it were not published.
  auto ev = watcher.wait("ota/v1/events/status");
  ASSERT_TRUE(ev);
  EXPECT_EQ(nlohmann::json::parse(ev->payload)["device"], "dev-q");
  EXPECT_FALSE(watcher.wait("ota/v1/events/check", 200ms));
  EXPECT_FALSE(watcher.wait("ota/v1/events/offer", 200ms));
  auto list = admin_->cmd("events.list", {{"device", "dev-q"}});
  ASSERT_EQ(list["ok"], true);
  std::set<std::string> kinds;
  for (const auto& item : list["result"]["items"]) kinds.insert(item["kind"].get<std::string>());
  EXPECT_EQ(kinds, (std::set<std::string>{"check", "offer", "status"}));
}

TEST_F(devices_test, a_restart_keeps_every_record) {
  add_release(kModel, "1.1.0", "restart");
  create_rollout(kModel, "1.1.0", {{"type", "all"}});
  {
    device d(env_, *topics_, "dev-r");
    d.connect_started();
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(d.check(*pub_, kModel, "1.0.0"));
    d.status({{"version", "1.1.0"}, {"state", "success"}});
  }
  auto count_events = [&] {
    std::size_t n = 0;
    nlohmann::json args = {{"device", "dev-r"}, {"limit", 10}};
    for (;;) {
      auto page = admin_->cmd("events.list", args)["result"];
      n += page["items"].size();
      if (page["next"].is_null()) break;
      args["after"] = page["next"];
    }
    return n;
  };
  std::this_thread::sleep_for(200ms);
  const auto before = count_events();
  EXPECT_EQ(before, 41u);  // 20 checks, 20 offers, 1 status
  admin_.reset();
  ASSERT_EQ(stop_otterd(), 0);
  start_otterd();
  admin_ = std::make_unique<operator_client>(env_, *topics_, "admin1");
  EXPECT_EQ(count_events(), before);
  auto dev = admin_->cmd("device.get", {{"id", "dev-r"}});
  EXPECT_EQ(dev["result"]["version"], "1.1.0");
  auto rel = admin_->cmd("release.get", {{"model", kModel}, {"version", "1.1.0"}});
  EXPECT_EQ(rel["ok"], true);
}

// OTTER_EVENT_RETENTION: an otterd that has run for long holds old events; they go when it
// starts (and every minute after), except the audit trail of changes.
TEST_F(devices_test, old_events_are_pruned_and_the_audit_trail_kept) {
  const auto count_events = [&](const std::string& where) {
    pqxx::connection c{db_->url()};
    pqxx::read_transaction tx{c};
    return tx.exec1("SELECT count(*) FROM events WHERE " + where)[0].as<int>();
  };
  // The fixture's otterd prunes too: stop it before there is anything old to prune.
  ASSERT_EQ(stop_otterd(), 0);
  {
    pqxx::connection c{db_->url()};
    pqxx::work tx{c};
    tx.exec0(
        "INSERT INTO events (at, kind, device, actor, data) VALUES "
        "(now() - interval '40 days', 'check', 'old-dev', NULL, '{}'), "
        "(now() - interval '40 days', 'offer', 'old-dev', NULL, '{}'), "
        "(now() - interval '40 days', 'command', NULL, 'old-admin', "
        "  '{\"cmd\": \"rollout.cancel\", \"ok\": true}'), "
        "(now() - interval '40 days', 'command', NULL, 'old-viewer', "
        "  '{\"cmd\": \"metrics.get\", \"ok\": true}'), "
        "(now() - interval '2 days', 'check', 'new-dev', NULL, '{}')");
    tx.commit();
  }
  // With retention off nothing goes, and the command worker sleeps between commands (it
  // once woke without end when there was nothing to prune).
  start_otterd({{"OTTER_EVENT_RETENTION", "0"}});
  operator_client keep_all(env_, *topics_, "admin1");
  auto m = keep_all.cmd("metrics.get");
  ASSERT_EQ(m["ok"], true) << m.dump();
  EXPECT_EQ(m["result"]["events_pruned"], 0);
  const auto cpu_ticks = [&] {
    std::ifstream in("/proc/" + std::to_string(otterd_->pid()) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::istringstream fields(stat.substr(stat.rfind(')') + 2));
    std::string f;
    long ticks = 0;
    for (int i = 3; i <= 15 && fields >> f; ++i)
      if (i >= 14) ticks += std::stol(f);  // utime and stime
    return ticks;
  };
  const auto before = cpu_ticks();
  std::this_thread::sleep_for(2s);
  EXPECT_LT(cpu_ticks() - before, 50) << "an idle otterd used more than a quarter of a core";
  EXPECT_EQ(count_events("device = 'old-dev'"), 2);

  // The first command is answered after the start-up pruning step.
  ASSERT_EQ(stop_otterd(), 0);
  start_otterd({{"OTTER_EVENT_RETENTION", "30d"}});
  operator_client pruning(env_, *topics_, "admin1");
  m = pruning.cmd("metrics.get");
  ASSERT_EQ(m["ok"], true) << m.dump();
  EXPECT_EQ(m["result"]["events_pruned"], 3);
  EXPECT_EQ(count_events("device = 'old-dev'"), 0);
  EXPECT_EQ(count_events("device = 'new-dev'"), 1);
  EXPECT_EQ(count_events("actor = 'old-admin'"), 1);
  EXPECT_EQ(count_events("actor = 'old-viewer'"), 0);
  EXPECT_NE(otterd_->log().find("decision=events_pruned removed=3 "), std::string::npos)
      << otterd_->log();
}

}  // namespace
}  // namespace otter::test
