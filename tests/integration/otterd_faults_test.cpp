// Faults: the broker restarts, PostgreSQL goes away, the record queue fills up, a second
// instance shares the database. otterd must keep its promises through each.
#include <gtest/gtest.h>
#include <httplib.h>

#include <csignal>
#include <thread>

#include "support/broker_process.hpp"
#include "support/harness.hpp"
#include "support/net.hpp"
#include "support/tcp_proxy.hpp"

namespace otter::test {
namespace {

const std::string kModel = "esp32-devkitc";

std::size_t count_events(operator_client& op, const nlohmann::json& filter) {
  std::size_t n = 0;
  nlohmann::json args = filter;
  args["limit"] = 1000;
  for (;;) {
    auto r = op.cmd("events.list", args);
    if (!r.is_object() || r.value("ok", false) != true) return SIZE_MAX;  // no answer: a string
    n += r["result"]["items"].size();
    if (r["result"]["next"].is_null()) return n;
    args["after"] = r["result"]["next"];
  }
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return pred();
}

class faults_test : public otter_fixture {
 protected:
  // Restarts otterd in share group "otter" and starts a second instance beside it, on the same
  // database and broker; the caller stops the second one.
  std::unique_ptr<otterd_process> start_two_instances() {
    admin_.reset();
    EXPECT_EQ(stop_otterd(), 0);
    start_otterd({{"OTTER_SHARE_GROUP", "otter"}});
    auto env2 = otterd_env();
    env2["OTTER_SHARE_GROUP"] = "otter";
    env2["OTTER_INSTANCE"] = instance_ + "-b";
    env2["OTTER_MQTT_CLIENT_ID"] = "otterd-" + instance_ + "-b";
    auto second = std::make_unique<otterd_process>(env2, dir_);
    EXPECT_TRUE(second->wait_ready()) << second->log();
    admin_ = std::make_unique<operator_client>(env_, *topics_, "admin1");
    return second;
  }
};

TEST_F(faults_test, broker_restart_reconnects_and_resubscribes) {
  // Our own broker, so that it can be killed without disturbing anyone.
  broker_process broker;
  admin_.reset();
  ASSERT_EQ(stop_otterd(), 0);
  env_.mqtt_url = broker.uri();
  start_otterd();
  device d(env_, *topics_, "bk-1");
  d.connect_started();
  ASSERT_TRUE(d.check(*pub_, kModel, "1.0.0"));
  broker.restart();
  ASSERT_TRUE(eventually(
      [&] {
        const auto log = otterd_->log();
        std::size_t n = 0;
        for (auto at = log.find("decision=mqtt_connected"); at != std::string::npos;
             at = log.find("decision=mqtt_connected", at + 1))
          ++n;
        return n >= 2;
      },
      30s))
      << otterd_->log();
  d.connect_started();  // the device's own client reconnects too
  auto o = d.check(*pub_, kModel, "1.0.0");
  ASSERT_TRUE(o) << "no answer after the broker restart";
  EXPECT_TRUE(o->signature_ok);
}

TEST_F(faults_test, database_outage_checks_still_answered_and_records_kept) {
  add_release(kModel, "1.1.0", "image-bytes");
  create_rollout(kModel, "1.1.0", {{"type", "all"}});
  tcp_proxy proxy(db_->admin_url());
  admin_.reset();
  ASSERT_EQ(stop_otterd(), 0);
  start_otterd({{"OTTER_DB_URL", url_with_host_port(db_->url(), "127.0.0.1", proxy.port())}});
  admin_ = std::make_unique<operator_client>(env_, *topics_, "admin1");
  device d(env_, *topics_, "db-1");
  d.connect_started();
  ASSERT_TRUE(d.check(*pub_, kModel, "1.0.0"));

  proxy.set_up(false);
  for (int i = 0; i < 10; ++i) {
    auto o = d.check(*pub_, kModel, "1.0.0");
    ASSERT_TRUE(o) << "check " << i << " not answered while PostgreSQL is away";
    EXPECT_EQ(o->answer["update"], true);
  }
  d.status({{"version", "1.1.0"}, {"state", "success"}});
  auto r = admin_->cmd("device.list");
  EXPECT_EQ(r["error"]["code"], "unavailable") << r.dump();

  proxy.set_up(true);
  // 11 checks + 11 offers + 1 status, all written once PostgreSQL is back.
  EXPECT_TRUE(eventually(
      [&] {
        return count_events(*admin_, {{"device", "db-1"}}) == 23;
      },
      30s))
      << count_events(*admin_, {{"device", "db-1"}});
  auto dev = admin_->cmd("device.get", {{"id", "db-1"}});
  EXPECT_EQ(dev["result"]["version"], "1.1.0");
  // Stop while the proxy still stands, so the drain reaches PostgreSQL.
  admin_.reset();
  EXPECT_EQ(stop_otterd(), 0) << "records left unwritten at shutdown";
}

// What a load balancer or an orchestrator asks: /healthz says 503 while either dependency is away,
// and 200 again once it is back, without a restart.
TEST_F(faults_test, healthz_is_503_while_the_database_or_the_broker_is_away) {
  broker_process broker;
  tcp_proxy proxy(db_->admin_url());
  admin_.reset();
  ASSERT_EQ(stop_otterd(), 0);
  env_.mqtt_url = broker.uri();
  const auto port = free_port();
  start_otterd({{"OTTER_DB_URL", url_with_host_port(db_->url(), "127.0.0.1", proxy.port())},
                {"OTTER_HTTP_ADDR", "127.0.0.1:" + std::to_string(port)},
                {"OTTER_PUBLIC_URL", "http://127.0.0.1:" + std::to_string(port)}});
  httplib::Client http("127.0.0.1", port);
  nlohmann::json last;
  const auto health_is = [&](int status, const nlohmann::json& body) {
    return eventually(
        [&] {
          const auto r = http.Get("/healthz");
          if (!r) return false;
          last = {{"status", r->status}, {"body", nlohmann::json::parse(r->body, nullptr, false)}};
          return r->status == status && last["body"] == body;
        },
        30s);
  };
  ASSERT_TRUE(health_is(200, {{"mqtt", true}, {"db", true}})) << last.dump();

  // The database goes away; the writer finds out at its next write (a check makes one).
  device d(env_, *topics_, "hz-1");
  d.connect_started();
  proxy.set_up(false);
  ASSERT_TRUE(d.check(*pub_, kModel, "1.0.0"));
  EXPECT_TRUE(health_is(503, {{"mqtt", true}, {"db", false}})) << last.dump();
  proxy.set_up(true);
  EXPECT_TRUE(health_is(200, {{"mqtt", true}, {"db", true}})) << last.dump();

  broker.stop();
  EXPECT_TRUE(health_is(503, {{"mqtt", false}, {"db", true}})) << last.dump();
  broker.start();
  EXPECT_TRUE(health_is(200, {{"mqtt", true}, {"db", true}})) << last.dump();
  EXPECT_EQ(stop_otterd(), 0);
}

TEST_F(faults_test, full_queue_answers_unavailable_instead_of_losing_records) {
  tcp_proxy proxy(db_->admin_url());
  admin_.reset();
  ASSERT_EQ(stop_otterd(), 0);
  start_otterd({{"OTTER_DB_URL", url_with_host_port(db_->url(), "127.0.0.1", proxy.port())},
                {"OTTER_QUEUE_LIMIT", "1000"}});
  device d(env_, *topics_, "q-1");
  d.connect_started();
  ASSERT_TRUE(d.check(*pub_, kModel, "1.0.0"));
  proxy.set_up(false);
  int answered = 0;
  bool refused = false;
  for (int i = 0; i < 600 && !refused; ++i) {
    auto o = d.check(*pub_, kModel, "1.0.0");
    if (o) {
      ++answered;
    } else {
      ASSERT_TRUE(d.last_error.is_object()) << d.last_error.dump();
      EXPECT_EQ(d.last_error["code"], "unavailable");
      refused = true;
    }
  }
  EXPECT_TRUE(refused) << "the queue bound was never reached";
  EXPECT_GT(answered, 200);
  proxy.set_up(true);
  admin_ = std::make_unique<operator_client>(env_, *topics_, "admin1");
  // Every answered check left its check and offer events; nothing was dropped silently.
  const std::size_t expected = 2 * (static_cast<std::size_t>(answered) + 1);
  EXPECT_TRUE(eventually(
      [&] {
        return count_events(*admin_, {{"device", "q-1"}, {"kind", "offer"}}) * 2 >= expected;
      },
      30s));
  EXPECT_EQ(count_events(*admin_, {{"device", "q-1"}, {"kind", "check"}}), answered + 1u);
  EXPECT_EQ(count_events(*admin_, {{"device", "q-1"}, {"kind", "offer"}}), answered + 1u);
  admin_.reset();
  EXPECT_EQ(stop_otterd(), 0) << "records left unwritten at shutdown";
}

TEST_F(faults_test, a_second_instance_sees_a_command_within_a_second) {
  add_release(kModel, "1.1.0", "two-instances");
  // Both instances split the device topics through a shared subscription.
  auto second_ptr = start_two_instances();
  ASSERT_FALSE(HasFailure());
  auto& second = *second_ptr;
  create_rollout(kModel, "1.1.0", {{"type", "all"}});
  std::this_thread::sleep_for(1s);
  std::vector<std::unique_ptr<device>> fleet;
  for (int i = 0; i < 10; ++i)
    fleet.push_back(std::make_unique<device>(env_, *topics_, "two-" + std::to_string(i)));
  for (auto& d : fleet) d->connect_started();
  for (auto& d : fleet) {
    auto o = d->check(*pub_, kModel, "1.0.0");
    ASSERT_TRUE(o);
    EXPECT_EQ(o->answer["update"], true) << d->id();
  }
  // Both instances answered some of them.
  EXPECT_NE(second.log().find("decision=offer"), std::string::npos);
  EXPECT_NE(otterd_->log().find("decision=offer"), std::string::npos);
  EXPECT_EQ(second.stop(), 0);
}

// An instance shutting down first unsubscribes, so the broker sends its share of the device
// and operator topics to the others while it drains; before, it stayed subscribed and dropped
// what it was sent (a drain waits up to 30 s for PostgreSQL, here kept away on purpose).
TEST_F(faults_test, a_draining_instance_leaves_its_share_to_the_others) {
  add_release(kModel, "1.1.0", "drain-image");
  const auto rid = create_rollout(kModel, "1.1.0", {{"type", "all"}});
  tcp_proxy proxy(db_->admin_url());
  admin_.reset();
  ASSERT_EQ(stop_otterd(), 0);
  start_otterd({{"OTTER_SHARE_GROUP", "otter"},
                {"OTTER_DB_URL", url_with_host_port(db_->url(), "127.0.0.1", proxy.port())}});
  auto env2 = otterd_env();
  env2["OTTER_SHARE_GROUP"] = "otter";
  env2["OTTER_INSTANCE"] = instance_ + "-b";
  env2["OTTER_MQTT_CLIENT_ID"] = "otterd-" + instance_ + "-b";
  otterd_process second(env2, dir_);
  ASSERT_TRUE(second.wait_ready()) << second.log();
  admin_ = std::make_unique<operator_client>(env_, *topics_, "admin1");

  // The first instance holds records it cannot write: its drain waits for PostgreSQL.
  proxy.set_up(false);
  for (int i = 0; i < 10 && otterd_->log().find("decision=offer") == std::string::npos; ++i) {
    device d(env_, *topics_, "pre-" + std::to_string(i));
    d.connect_started();
    ASSERT_TRUE(d.check(*pub_, kModel, "1.0.0"));
  }
  ASSERT_NE(otterd_->log().find("decision=offer"), std::string::npos);
  ASSERT_EQ(::kill(otterd_->pid(), SIGTERM), 0);
  ASSERT_TRUE(
      eventually([&] { return otterd_->log().find("stage=drain") != std::string::npos; }, 10s))
      << otterd_->log();
  std::vector<std::unique_ptr<device>> fleet;
  for (int i = 0; i < 10; ++i)
    fleet.push_back(std::make_unique<device>(env_, *topics_, "drain-" + std::to_string(i)));
  for (auto& d : fleet) d->connect_started();
  for (auto& d : fleet)
    d->status({{"req", "s-1"}, {"version", "1.1.0"}, {"state", "downloading"}, {"rollout", rid}});
  EXPECT_TRUE(eventually(
      [&] {
        return count_events(*admin_, {{"kind", "status"}}) == 10;
      },
      15s))
      << count_events(*admin_, {{"kind", "status"}}) << " of 10 status reports recorded";
  EXPECT_TRUE(otterd_->running()) << "the first instance should still be draining";

  proxy.set_up(true);
  admin_.reset();
  EXPECT_EQ(stop_otterd(), 0);
  EXPECT_EQ(second.stop(), 0);
}

// With a shared subscription a device's chunk requests are spread over the instances, most of
// which did not make its offer: the grant travels (NOTIFY otter_grants) and every request is
// served, none refused `forbidden`.
TEST_F(faults_test, two_instances_share_chunk_grants) {
  std::string image(60'000, '\0');
  for (std::size_t i = 0; i < image.size(); ++i) image[i] = static_cast<char>((i * 131) ^ (i >> 7));
  add_release(kModel, "1.2.0", image);
  auto second_ptr = start_two_instances();
  ASSERT_FALSE(HasFailure());
  auto& second = *second_ptr;
  create_rollout(kModel, "1.2.0", {{"type", "all"}});
  std::this_thread::sleep_for(1s);

  for (int n = 0; n < 3; ++n) {
    const std::string id = "share-" + std::to_string(n);
    device d(env_, *topics_, id);
    d.connect_started();
    auto o = d.check(*pub_, kModel, "1.0.0");
    ASSERT_TRUE(o && o->answer["update"] == true) << id;
    const std::string file = o->claims["chunk"]["file"];
    std::string got;
    // One chunk per request: many requests, spread over both instances.
    for (int req = 0; got.size() < image.size(); ++req) {
      const nlohmann::json r = {{"req", "k-" + std::to_string(req)},
                                {"file", file},
                                {"offset", got.size()},
                                {"len", 4096},
                                {"count", 1}};
      d.mqtt().publish("ota/v1/dev/" + id + "/up/chunk", r.dump());
      auto m = d.mqtt().wait(
          "ota/v1/dev/" + id + "/down/chunk/" + file + "/" + std::to_string(got.size()), 5s);
      ASSERT_TRUE(m) << id << " at " << got.size() << ": "
                     << d.wait_error(100ms).value_or(nullptr).dump();
      got += m->payload;
    }
    EXPECT_EQ(got, image) << id;
    EXPECT_FALSE(d.wait_error(100ms)) << id;
  }
  EXPECT_EQ(second.stop(), 0);
}

// With a shared subscription consecutive messages of a device reach different instances, so
// each must know what the others learned (NOTIFY otter_devices and otter_grants): attributes
// sent once still place the device in its group, a status without "rollout" is attributed to
// the offer another instance made, and a success reported to one is rolled back by a check to
// the other, once.
TEST_F(faults_test, two_instances_share_what_they_learn_of_devices) {
  add_release(kModel, "1.3.0", "group-image");
  auto second_ptr = start_two_instances();
  ASSERT_FALSE(HasFailure());
  auto& second = *second_ptr;
  const auto rid = create_rollout(kModel, "1.3.0", {{"type", "group"}, {"attrs", {{"site", "x"}}}});
  std::this_thread::sleep_for(1s);
  const auto settle = [] { std::this_thread::sleep_for(400ms); };

  for (int n = 0; n < 6; ++n) {
    const std::string id = "learn-" + std::to_string(n);
    device d(env_, *topics_, id);
    d.connect_started();
    auto first = d.check(*pub_, kModel, "1.0.0", {{"site", "x"}});
    ASSERT_TRUE(first) << id;
    ASSERT_EQ(first->answer["update"], true) << id;
    settle();
    // One instance made the offer; the other hears of it (with its version) by the grant.
    for (int i = 0; i < 2; ++i)
      d.status({{"req", "s-" + std::to_string(i)}, {"version", "1.3.0"}, {"state", "downloading"}});
    settle();
    auto list = admin_->cmd("status.list", {{"device", id}, {"state", "downloading"}});
    ASSERT_EQ(list["result"]["items"].size(), 2u) << list.dump();
    for (const auto& item : list["result"]["items"])
      EXPECT_EQ(item["rollout"], rid) << id << ": " << item.dump();
    for (int i = 0; i < 3; ++i) {
      auto o = d.check(*pub_, kModel, "1.0.0");
      ASSERT_TRUE(o) << id;
      EXPECT_EQ(o->answer["update"], true) << id << ": check " << i << " without attributes";
    }
    d.status({{"req", "s-9"}, {"version", "1.3.0"}, {"state", "success"}, {"rollout", rid}});
    settle();

    const auto rolled_back = [&] {
      return admin_
          ->cmd("status.list", {{"device", id}, {"state", "rolled_back"}})["result"]["items"]
          .size();
    };
    ASSERT_TRUE(d.check(*pub_, kModel, "1.0.0"));
    settle();
    EXPECT_EQ(rolled_back(), 1u) << id << ": the success was reported to either instance";
    ASSERT_TRUE(d.check(*pub_, kModel, "1.0.0"));
    settle();
    EXPECT_EQ(rolled_back(), 1u) << id << ": derived once, not again by the other instance";
  }
  EXPECT_EQ(second.stop(), 0);
}

// Attributes too long for a note (PostgreSQL's NOTIFY takes under 8000 bytes) travel by the
// devices row: the other instance reads them back, so the device stays in its group there.
TEST_F(faults_test, attributes_too_long_for_a_note_are_read_back_by_the_other_instance) {
  add_release(kModel, "1.5.0", "big-attrs-image");
  auto second_ptr = start_two_instances();
  ASSERT_FALSE(HasFailure());
  auto& second = *second_ptr;
  create_rollout(kModel, "1.5.0", {{"type", "group"}, {"attrs", {{"site", "x"}}}});
  std::this_thread::sleep_for(1s);
  nlohmann::json attrs = {{"site", "x"}};
  std::string wide;  // 128 characters of 4 bytes each in UTF-8
  for (int i = 0; i < 128; ++i) wide += "\xF0\x9F\x98\x80";
  for (int i = 0; i < 15; ++i) attrs["k" + std::to_string(i)] = wide;

  for (int n = 0; n < 2; ++n) {
    const std::string id = "wide-" + std::to_string(n);
    device d(env_, *topics_, id);
    d.connect_started();
    auto first = d.check(*pub_, kModel, "1.0.0", attrs);
    ASSERT_TRUE(first) << id;
    ASSERT_EQ(first->answer["update"], true) << id;
    std::this_thread::sleep_for(400ms);
    // Consecutive checks go to both instances in turn.
    for (int i = 0; i < 4; ++i) {
      auto o = d.check(*pub_, kModel, "1.0.0");
      ASSERT_TRUE(o) << id;
      EXPECT_EQ(o->answer["update"], true) << id << ": check " << i << " without attributes";
    }
  }
  EXPECT_NE((otterd_->log() + second.log()).find("decision=device_attrs_read device=wide-0"),
            std::string::npos);
  EXPECT_EQ(second.stop(), 0);
}

// A device reports right after the offer, without "rollout"; the report may reach the other
// instance before the offer's note does (it travels when the offering instance's batch
// commits). There it waits for the note, and the device's next report on that instance waits
// behind it, so every report is attributed and one instance records them in the order sent.
TEST_F(faults_test, a_status_right_after_the_offer_waits_for_it_on_the_other_instance) {
  add_release(kModel, "1.4.0", "fast-image");
  auto second_ptr = start_two_instances();
  ASSERT_FALSE(HasFailure());
  auto& second = *second_ptr;
  const auto rid = create_rollout(kModel, "1.4.0", {{"type", "all"}});
  std::this_thread::sleep_for(1s);
  std::vector<std::unique_ptr<device>> fleet;
  for (int n = 0; n < 6; ++n)
    fleet.push_back(std::make_unique<device>(env_, *topics_, "fast-" + std::to_string(n)));
  for (auto& d : fleet) d->connect_started();
  for (auto& d : fleet) {
    auto o = d->check(*pub_, kModel, "1.0.0");
    ASSERT_TRUE(o && o->answer["update"] == true) << d->id();
    d->status({{"req", "s-1"}, {"version", "1.4.0"}, {"state", "downloading"}});
    d->status({{"req", "s-2"}, {"version", "1.4.0"}, {"state", "downloading"}, {"progress", 50}});
    d->status({{"req", "s-3"}, {"version", "1.4.0"}, {"state", "installing"}, {"rollout", rid}});
  }
  for (auto& d : fleet) {
    nlohmann::json items;
    ASSERT_TRUE(eventually(
        [&] {
          items = admin_->cmd("status.list", {{"device", d->id()}})["result"]["items"];
          return items.size() == 3;
        },
        5s))
        << d->id() << ": " << items.dump();
    for (const auto& item : items)
      EXPECT_EQ(item["rollout"], rid) << d->id() << ": " << item.dump();
  }
  // Not checked: the order between instances, which is the broker's (a shared subscription
  // keeps none).
  EXPECT_EQ(second.stop(), 0);
}

}  // namespace
}  // namespace otter::test
