// The PostgreSQL store against a real server: a scratch database per test (support/test_db).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <mutex>
#include <pqxx/pqxx>
#include <set>
#include <string_view>
#include <thread>
#include <vector>

#include "protocol/commands.hpp"
#include "protocol/semver.hpp"
#include "store/listener.hpp"
#include "store/migrations.hpp"
#include "store/records.hpp"
#include "store/repository.hpp"
#include "store/writer.hpp"
#include "support/tcp_proxy.hpp"
#include "support/test_db.hpp"

namespace otter {
namespace {

using test::tcp_proxy;

using namespace std::chrono_literals;
using store::time_point;

// ---------------------------------------------------------------------------------------------
// Helpers

// A fixed instant, so that expected RFC 3339 strings can be written down.
time_point at(int seconds, int millis = 0) {
  using namespace std::chrono;
  return sys_days{year{2026} / 11 / 27} + 21h + std::chrono::seconds{seconds} +
         milliseconds{millis};
}

pqxx::result query(const std::string& url, const std::string& sql) {
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  return tx.exec(sql);
}

std::int64_t count(const std::string& url, const std::string& table) {
  return query(url, "SELECT count(*) FROM " + table)[0][0].as<std::int64_t>();
}

protocol::version_arg ver(const std::string& text) {
  auto v = protocol::parse_semver(text);
  if (!v) throw std::runtime_error("bad test version " + text);
  return {text, *v};
}

std::string sha(int n) {
  char buf[65];
  std::snprintf(buf, sizeof buf, "%064x", n);
  return buf;
}

store::event_record event(const std::string& kind, int n,
                          std::optional<std::string> device = std::nullopt,
                          std::optional<std::int64_t> rollout = std::nullopt,
                          time_point when = at(0)) {
  store::event_record e;
  e.at = when;
  e.kind = kind;
  e.device = std::move(device);
  e.actor = std::nullopt;
  e.rollout = rollout;
  e.instance = "test";
  e.data = {{"n", n}};
  return e;
}

store::record_set events_set(const std::string& kind, int n, int count = 1) {
  store::record_set s;
  for (int i = 0; i < count; ++i) s.events.push_back(event(kind, n * 100 + i));
  return s;
}

// A port on 127.0.0.1 where nothing listens (bound, then closed again).
int dead_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 10s) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

class store_test : public ::testing::Test {
 protected:
  void SetUp() override { db_ = std::make_unique<test::scratch_db>(); }

  const std::string& url() const { return db_->url(); }

  std::unique_ptr<store::repository> open_repo() {
    auto r = std::make_unique<store::repository>(url());
    r->open();
    return r;
  }

  void migrate_db() {
    pqxx::connection c{url()};
    store::migrate(c);
  }

  // A release with its upload, for rollout tests.
  void add_release(store::repository& repo, const std::string& model, const std::string& version,
                   int sha_n, std::optional<std::string> min_version = std::nullopt) {
    ASSERT_TRUE(repo.add_upload(sha(sha_n), 1000 + static_cast<std::uint64_t>(sha_n), "alice"));
    protocol::release_add_args a;
    a.model = model;
    a.version = ver(version);
    a.sha256 = sha(sha_n);
    if (min_version) a.min_version = ver(*min_version);
    auto r = repo.add_release(a, 0, "alice");
    ASSERT_TRUE(r) << r.error().message;
  }

  std::int64_t create_rollout(store::repository& repo, const std::string& model,
                              const std::string& version, const nlohmann::json& target,
                              const std::string& name = "r") {
    protocol::rollout_create_args a;
    a.name = name;
    a.model = model;
    a.version = ver(version);
    auto t = protocol::parse_target(target);
    if (!t) throw std::runtime_error("bad target: " + t.error().message);
    a.tgt = *t;
    auto r = repo.create_rollout(a, "alice");
    if (!r) throw std::runtime_error("create_rollout: " + r.error().message);
    return std::stoll((*r)["id"].get<std::string>());
  }

  std::unique_ptr<test::scratch_db> db_;
};

// ---------------------------------------------------------------------------------------------
// records

TEST(records, rfc3339_is_utc_with_milliseconds) {
  EXPECT_EQ(store::to_rfc3339(at(7, 123)), "2026-11-27T21:00:07.123Z");
  EXPECT_EQ(store::to_rfc3339(time_point{} - 1ms), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(store::to_rfc3339(time_point{} + 1500us), "1970-01-01T00:00:00.001Z");
}

TEST(records, event_json_has_rollout_as_string) {
  auto e = event("offer", 1, "dev-1", 17, at(1));
  e.id = 42;
  const auto j = e.to_json();
  EXPECT_EQ(j["id"], "42");
  EXPECT_EQ(j["at"], "2026-11-27T21:00:01.000Z");
  EXPECT_EQ(j["kind"], "offer");
  EXPECT_EQ(j["device"], "dev-1");
  EXPECT_TRUE(j["actor"].is_null());
  EXPECT_EQ(j["rollout"], "17");
  EXPECT_EQ(j["data"], (nlohmann::json{{"n", 1}}));
  EXPECT_FALSE(j.contains("instance"));
  e.rollout.reset();
  EXPECT_TRUE(e.to_json()["rollout"].is_null());
}

TEST(records, missing_test_database_url_says_what_to_do) {
  const char* saved = std::getenv("OTTER_TEST_DB_URL");
  const std::string keep = saved ? saved : "";
  ::unsetenv("OTTER_TEST_DB_URL");
  try {
    test::scratch_db db;
    ADD_FAILURE() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string{e.what()}.find("scripts/stack.sh start"), std::string::npos);
  }
  if (saved) ::setenv("OTTER_TEST_DB_URL", keep.c_str(), 1);
}

TEST(records, url_rewriting) {
  EXPECT_EQ(test::url_with_database("postgresql://u@h:1/postgres", "x"), "postgresql://u@h:1/x");
  EXPECT_EQ(test::url_with_database("postgresql://u@h:1", "x"), "postgresql://u@h:1/x");
  EXPECT_EQ(test::url_with_database("postgresql://u:p@h/db?sslmode=disable", "x"),
            "postgresql://u:p@h/x?sslmode=disable");
  EXPECT_EQ(test::url_with_database("host=h user=u", "x"), "host=h user=u dbname=x");
  EXPECT_EQ(test::url_with_host_port("postgresql://u:p@h:1/db?a=b", "127.0.0.1", 9),
            "postgresql://u:p@127.0.0.1:9/db?a=b");
  EXPECT_EQ(test::url_with_host_port("postgresql://h/db", "127.0.0.1", 9),
            "postgresql://127.0.0.1:9/db");
}

// ---------------------------------------------------------------------------------------------
// migrations

TEST_F(store_test, migrate_applies_once_then_nothing) {
  pqxx::connection c{url()};
  const auto first = store::migrate(c);
  ASSERT_EQ(first.size(), store::embedded_migrations().size());
  EXPECT_EQ(first.front(), "001_init");
  EXPECT_TRUE(store::migrate(c).empty());
  EXPECT_EQ(count(url(), "otter_migrations"),
            static_cast<std::int64_t>(store::embedded_migrations().size()));
  EXPECT_EQ(count(url(), "events"), 0);
}

// Migrations 002 and 003 keep the hot path's event inserts to the index entries queries need.
TEST_F(store_test, event_indexes_skip_the_rows_no_query_looks_up_by_them) {
  migrate_db();
  pqxx::connection c{url()};
  pqxx::nontransaction tx{c};
  auto def = [&](const std::string& name) {
    return tx.exec_params1("SELECT indexdef FROM pg_indexes WHERE indexname = $1", name)[0]
        .as<std::string>();
  };
  // A B-tree, not BRIN: retention frees the oldest pages for new rows (006_events_at_btree).
  EXPECT_NE(def("events_at").find("USING btree (at)"), std::string::npos) << def("events_at");
  EXPECT_NE(def("events_rollout").find("WHERE (rollout IS NOT NULL)"), std::string::npos);
  const auto kind = def("events_kind");
  EXPECT_NE(kind.find("WHERE"), std::string::npos) << kind;
  EXPECT_NE(kind.find("'check'"), std::string::npos) << kind;
  EXPECT_NE(kind.find("'offer'"), std::string::npos) << kind;
  // A rare kind, looked up with its value as the service does, is answered from the index.
  tx.exec0("SET enable_seqscan = off");
  const auto plan = tx.exec(
      "EXPLAIN SELECT id FROM events WHERE kind = 'command' ORDER BY id DESC "
      "LIMIT 10");
  std::string text;
  for (const auto& row : plan) text += row[0].as<std::string>() + "\n";
  EXPECT_NE(text.find("events_kind"), std::string::npos) << text;
}

TEST_F(store_test, migrate_applies_only_new_ones_in_order) {
  pqxx::connection c{url()};
  std::vector<store::migration> v1{{"001_a", "CREATE TABLE a (x int); INSERT INTO a VALUES (1);"}};
  EXPECT_EQ(store::migrate(c, v1), (std::vector<std::string>{"001_a"}));
  auto v2 = v1;
  v2.push_back({"002_b", "CREATE TABLE b AS SELECT x + 1 AS y FROM a;"});
  v2.push_back({"003_c", "CREATE TABLE c AS SELECT y + 1 AS z FROM b;"});
  EXPECT_EQ(store::migrate(c, v2), (std::vector<std::string>{"002_b", "003_c"}));
  EXPECT_EQ(query(url(), "SELECT z FROM c")[0][0].as<int>(), 3);
}

// README "Upgrading": an operator may build the B-tree on events.at beforehand, concurrently;
// migration 006 then leaves it as it is. Otherwise 006 builds it and drops the BRIN index.
TEST_F(store_test, events_at_btree_migration_keeps_an_index_built_beforehand) {
  const auto& all = store::embedded_migrations();
  const auto upto = [&](const std::string& last) {
    std::vector<store::migration> v;
    for (const auto& m : all)
      if (m.name <= last) v.push_back(m);
    return v;
  };
  pqxx::connection c{url()};
  store::migrate(c, upto("005_rollout_devices_status_at"));
  const auto indexes = [&] {
    std::vector<std::string> out;
    for (const auto& r : query(url(),
                               "SELECT indexname || ' ' || indexdef FROM pg_indexes "
                               "WHERE tablename = 'events' AND indexdef LIKE '%(at)%' "
                               "ORDER BY indexname"))
      out.push_back(r[0].as<std::string>());
    return out;
  };
  ASSERT_EQ(indexes().size(), 1u);
  EXPECT_NE(indexes()[0].find("USING brin"), std::string::npos);
  query(url(), "CREATE INDEX CONCURRENTLY events_at_btree ON events (at)");
  query(url(), "DROP INDEX CONCURRENTLY events_at");
  query(url(), "ALTER INDEX events_at_btree RENAME TO events_at");
  const auto oid = query(url(), "SELECT 'events_at'::regclass::oid")[0][0].as<std::int64_t>();
  const auto applied = store::migrate(c);
  ASSERT_FALSE(applied.empty());
  EXPECT_EQ(applied.front(), "006_events_at_btree");
  ASSERT_EQ(indexes().size(), 1u);
  EXPECT_NE(indexes()[0].find("events_at CREATE INDEX events_at ON public.events USING btree (at)"),
            std::string::npos)
      << indexes()[0];
  EXPECT_EQ(query(url(), "SELECT 'events_at'::regclass::oid")[0][0].as<std::int64_t>(), oid);
}

TEST_F(store_test, failed_migration_applies_nothing) {
  pqxx::connection c{url()};
  std::vector<store::migration> bad{{"001_a", "CREATE TABLE a (x int);"},
                                    {"002_b", "CREATE TABLE broken (;"}};
  EXPECT_THROW(store::migrate(c, bad), pqxx::sql_error);
  EXPECT_EQ(query(url(), "SELECT to_regclass('a') IS NULL")[0][0].as<bool>(), true);
}

TEST_F(store_test, concurrent_migrations_both_succeed_and_apply_once) {
  for (int round = 0; round < 3; ++round) {
    test::scratch_db fresh;
    std::atomic<int> ready{0};
    std::vector<std::string> applied[2];
    std::string failure[2];
    auto run = [&](int i) {
      try {
        pqxx::connection c{fresh.url()};
        ++ready;
        while (ready < 2) std::this_thread::yield();
        applied[i] = store::migrate(c);
      } catch (const std::exception& e) {
        failure[i] = e.what();
      }
    };
    std::thread a(run, 0), b(run, 1);
    a.join();
    b.join();
    EXPECT_EQ(failure[0], "");
    EXPECT_EQ(failure[1], "");
    EXPECT_EQ(applied[0].size() + applied[1].size(), store::embedded_migrations().size());
    EXPECT_TRUE(applied[0].empty() || applied[1].empty());
    EXPECT_EQ(count(fresh.url(), "otter_migrations"),
              static_cast<std::int64_t>(store::embedded_migrations().size()));
  }
}

// ---------------------------------------------------------------------------------------------
// writer

TEST_F(store_test, writer_writes_every_kind_and_ids_follow_submit_order) {
  migrate_db();
  std::mutex mu;
  std::vector<store::event_record> recorded;
  store::writer w(url(), 1000, [&](const std::vector<store::event_record>& evs) {
    std::lock_guard lock(mu);
    recorded.insert(recorded.end(), evs.begin(), evs.end());
  });
  w.start();

  store::record_set s;
  s.events.push_back(event("check", 1, "dev-1", std::nullopt, at(1, 5)));
  s.events.push_back(event("offer", 2, "dev-1", 7, at(1, 6)));
  s.devices.push_back({"dev-1", "esp32", "1.0.0", true, {{"site", "w3"}}, at(1)});
  s.statuses.push_back({"dev-1", 7, "1.1.0", "downloading", 42, std::nullopt, at(2)});
  s.statuses.push_back({"dev-1", std::nullopt, "1.1.0", "failed", std::nullopt, "boom", at(3)});
  s.rollout_devices.push_back({7, "dev-1", "offered", at(1)});
  ASSERT_TRUE(w.submit(std::move(s)));
  for (int i = 3; i < 10; ++i) {
    ASSERT_TRUE(w.submit(events_set("status", i, 2)));
    if (i % 3 == 0) std::this_thread::sleep_for(5ms);  // spread over several batches
  }
  ASSERT_TRUE(w.flush(10s));

  const auto st = w.stats();
  EXPECT_EQ(st.written, 6u + 14u);
  EXPECT_EQ(st.queued, 0u);
  EXPECT_EQ(st.dropped, 0u);
  EXPECT_TRUE(st.connected);
  EXPECT_GE(st.batches, 1u);

  // ids increase in submission order, in the database and in what on_recorded saw.
  {
    std::lock_guard lock(mu);
    ASSERT_EQ(recorded.size(), 16u);
    for (std::size_t i = 1; i < recorded.size(); ++i) EXPECT_LT(recorded[i - 1].id, recorded[i].id);
    EXPECT_EQ(recorded[0].kind, "check");
    EXPECT_EQ(recorded[1].rollout, 7);
  }
  const auto evs = query(url(),
                         "SELECT id, data->>'n', kind, device, rollout, instance, "
                         "to_char(at AT TIME ZONE 'UTC', 'HH24:MI:SS.MS') FROM events "
                         "ORDER BY id");
  ASSERT_EQ(evs.size(), 16u);
  EXPECT_EQ(evs[0][1].as<std::string>(), "1");
  EXPECT_EQ(evs[0][2].as<std::string>(), "check");
  EXPECT_EQ(evs[0][3].as<std::string>(), "dev-1");
  EXPECT_TRUE(evs[0][4].is_null());
  EXPECT_EQ(evs[0][5].as<std::string>(), "test");
  EXPECT_EQ(evs[0][6].as<std::string>(), "21:00:01.005");
  EXPECT_EQ(evs[1][4].as<std::int64_t>(), 7);
  for (std::size_t i = 2; i < evs.size(); ++i)
    EXPECT_EQ(evs[i][1].as<int>(), static_cast<int>(300 + (i - 2) / 2 * 100 + (i - 2) % 2));

  const auto dev = query(url(), "SELECT model, version, attrs->>'site' FROM devices");
  ASSERT_EQ(dev.size(), 1u);
  EXPECT_EQ(dev[0][0].as<std::string>(), "esp32");
  EXPECT_EQ(dev[0][2].as<std::string>(), "w3");

  const auto sr = query(url(),
                        "SELECT state, progress, error, rollout FROM status_reports "
                        "ORDER BY id");
  ASSERT_EQ(sr.size(), 2u);
  EXPECT_EQ(sr[0][0].as<std::string>(), "downloading");
  EXPECT_EQ(sr[0][1].as<int>(), 42);
  EXPECT_TRUE(sr[0][2].is_null());
  EXPECT_EQ(sr[1][2].as<std::string>(), "boom");
  EXPECT_TRUE(sr[1][3].is_null());

  const auto rd = query(url(), "SELECT state, offered_at IS NOT NULL FROM rollout_devices");
  ASSERT_EQ(rd.size(), 1u);
  EXPECT_EQ(rd[0][0].as<std::string>(), "offered");
  EXPECT_TRUE(rd[0][1].as<bool>());
  EXPECT_EQ(w.stop(5s), 0u);
}

// Events go in by COPY, whose text format gives tab, newline and backslash a meaning: each must
// arrive as it was sent, and a missing device, actor, rollout or instance as NULL.
TEST_F(store_test, writer_stores_event_text_exactly_and_absent_values_as_null) {
  migrate_db();
  store::writer w(url(), 1000, nullptr);
  w.start();
  const std::string tricky = "tab\there\nnew line\\back\\slash \\N \"q\" \u00e9\r end";
  store::record_set s;
  auto e = event("command", 1, "dev.1_x-2", 42);
  e.actor = "op\tone\\two";
  e.data = {{"s", tricky}, {"nested", {{"k", "\\."}}}};
  s.events.push_back(std::move(e));
  auto bare = event("upload", 2);
  bare.instance.clear();
  bare.data = nlohmann::json::array();  // not an object: stored as {} (as R/events shows it)
  s.events.push_back(std::move(bare));
  ASSERT_TRUE(w.submit(std::move(s)));
  ASSERT_TRUE(w.flush(10s));
  EXPECT_EQ(w.stats().dropped, 0u);

  const auto rows = query(url(),
                          "SELECT data->>'s', data->'nested'->>'k', actor, device, rollout, "
                          "instance, data::text FROM events ORDER BY id");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0][0].as<std::string>(), tricky);
  EXPECT_EQ(rows[0][1].as<std::string>(), "\\.");
  EXPECT_EQ(rows[0][2].as<std::string>(), "op\tone\\two");
  EXPECT_EQ(rows[0][3].as<std::string>(), "dev.1_x-2");
  EXPECT_EQ(rows[0][4].as<std::int64_t>(), 42);
  EXPECT_EQ(rows[0][5].as<std::string>(), "test");
  EXPECT_TRUE(rows[1][2].is_null());
  EXPECT_TRUE(rows[1][3].is_null());
  EXPECT_TRUE(rows[1][4].is_null());
  EXPECT_TRUE(rows[1][5].is_null());
  EXPECT_EQ(rows[1][6].as<std::string>(), "{}");
  EXPECT_EQ(w.stop(5s), 0u);
}

TEST_F(store_test, writer_device_upsert_keeps_earliest_first_seen_and_latest_values) {
  migrate_db();
  store::writer w(url(), 1000);
  // One batch (submitted before start): the same device several times, out of time order.
  store::record_set a, b, c;
  a.devices.push_back({"d1", "m1", "1.0.0", true, {{"k", "a"}}, at(10)});
  b.devices.push_back({"d1", "m1", "0.9.0", false, {}, at(5)});   // older: no model/version
  c.devices.push_back({"d1", "m2", "1.1.0", false, {}, at(20)});  // newer, no attrs
  c.devices.push_back({"d2", "m1", "2.0.0", false, {}, at(1)});
  ASSERT_TRUE(w.submit(std::move(a)));
  ASSERT_TRUE(w.submit(std::move(b)));
  ASSERT_TRUE(w.submit(std::move(c)));
  w.start();
  ASSERT_TRUE(w.flush(10s));
  auto rows = query(url(),
                    "SELECT id, model, version, attrs::text, "
                    "to_char(first_seen AT TIME ZONE 'UTC', 'MI:SS'), "
                    "to_char(last_seen AT TIME ZONE 'UTC', 'MI:SS') FROM devices ORDER BY seq");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0][0].as<std::string>(), "d1");
  EXPECT_EQ(rows[0][1].as<std::string>(), "m2");
  EXPECT_EQ(rows[0][2].as<std::string>(), "1.1.0");
  EXPECT_EQ(rows[0][3].as<std::string>(), R"({"k": "a"})");
  EXPECT_EQ(rows[0][4].as<std::string>(), "00:05");
  EXPECT_EQ(rows[0][5].as<std::string>(), "00:20");
  EXPECT_EQ(rows[1][3].as<std::string>(), "{}");

  // A later batch: an older sighting changes nothing but first_seen; attrs replaced only
  // when the record carries them.
  store::record_set d;
  d.devices.push_back({"d1", "m3", "0.1.0", false, {}, at(2)});
  ASSERT_TRUE(w.submit(std::move(d)));
  ASSERT_TRUE(w.flush(10s));
  rows = query(url(),
               "SELECT model, version, attrs::text, "
               "to_char(first_seen AT TIME ZONE 'UTC', 'MI:SS') FROM devices "
               "WHERE id = 'd1'");
  EXPECT_EQ(rows[0][0].as<std::string>(), "m2");
  EXPECT_EQ(rows[0][1].as<std::string>(), "1.1.0");
  EXPECT_EQ(rows[0][2].as<std::string>(), R"({"k": "a"})");
  EXPECT_EQ(rows[0][3].as<std::string>(), "00:02");

  store::record_set e;
  e.devices.push_back({"d1", "m2", "1.2.0", true, {{"k", "b"}, {"z", "1"}}, at(30)});
  ASSERT_TRUE(w.submit(std::move(e)));
  ASSERT_TRUE(w.flush(10s));
  rows = query(url(), "SELECT version, attrs::text FROM devices WHERE id = 'd1'");
  EXPECT_EQ(rows[0][0].as<std::string>(), "1.2.0");
  EXPECT_EQ(rows[0][1].as<std::string>(), R"({"k": "b", "z": "1"})");
  EXPECT_EQ(w.stop(5s), 0u);
}

TEST_F(store_test, writer_rollout_device_offer_never_overwrites_a_status) {
  migrate_db();
  store::writer w(url(), 1000);
  w.start();
  auto submit_rd = [&](std::int64_t rollout, const std::string& dev, const std::string& state,
                       int second) {
    store::record_set s;
    s.rollout_devices.push_back({rollout, dev, state, at(second)});
    ASSERT_TRUE(w.submit(std::move(s)));
    ASSERT_TRUE(w.flush(10s));
  };
  auto row = [&](std::int64_t rollout, const std::string& dev) {
    pqxx::connection c{url()};
    pqxx::work tx{c};
    return tx.exec_params1(
        "SELECT state, to_char(offered_at AT TIME ZONE 'UTC', 'MI:SS'), "
        "to_char(updated_at AT TIME ZONE 'UTC', 'MI:SS') "
        "FROM rollout_devices WHERE rollout = $1 AND device = $2",
        rollout, dev);
  };
  submit_rd(1, "a", "offered", 1);
  EXPECT_EQ(row(1, "a")[0].as<std::string>(), "offered");
  EXPECT_EQ(row(1, "a")[1].as<std::string>(), "00:01");
  submit_rd(1, "a", "offered", 2);  // a second offer keeps the first offered_at
  EXPECT_EQ(row(1, "a")[1].as<std::string>(), "00:01");
  EXPECT_EQ(row(1, "a")[2].as<std::string>(), "00:02");
  submit_rd(1, "a", "downloading", 3);
  EXPECT_EQ(row(1, "a")[0].as<std::string>(), "downloading");
  submit_rd(1, "a", "offered", 4);
  EXPECT_EQ(row(1, "a")[0].as<std::string>(), "downloading");
  submit_rd(1, "a", "failed", 5);
  EXPECT_EQ(row(1, "a")[0].as<std::string>(), "failed");

  // A status without an offer: no offered_at.
  submit_rd(2, "b", "success", 6);
  EXPECT_EQ(row(2, "b")[0].as<std::string>(), "success");
  EXPECT_TRUE(row(2, "b")[1].is_null());

  // Within one batch, in submission order: status then offer, and offer then status.
  store::writer w2(url(), 1000);
  store::record_set s1, s2;
  s1.rollout_devices.push_back({3, "c", "installing", at(7)});
  s1.rollout_devices.push_back({3, "d", "offered", at(7)});
  s2.rollout_devices.push_back({3, "c", "offered", at(8)});
  s2.rollout_devices.push_back({3, "d", "verifying", at(8)});
  ASSERT_TRUE(w2.submit(std::move(s1)));
  ASSERT_TRUE(w2.submit(std::move(s2)));
  w2.start();
  ASSERT_TRUE(w2.flush(10s));
  EXPECT_EQ(row(3, "c")[0].as<std::string>(), "installing");
  EXPECT_EQ(row(3, "c")[1].as<std::string>(), "00:08");
  EXPECT_EQ(row(3, "d")[0].as<std::string>(), "verifying");
  EXPECT_EQ(row(3, "d")[1].as<std::string>(), "00:07");
  EXPECT_EQ(row(3, "d")[2].as<std::string>(), "00:08");
}

// A report written after a newer one (another instance; a report held for its offer) does not
// take the state back: the newest report by time wins, across batches and within one.
TEST_F(store_test, writer_rollout_device_state_is_the_newest_reports) {
  migrate_db();
  store::writer w(url(), 1000);
  w.start();
  auto state = [&](const std::string& dev) {
    pqxx::connection c{url()};
    pqxx::work tx{c};
    return tx
        .exec_params1("SELECT state FROM rollout_devices WHERE rollout = 4 AND device = $1", dev)[0]
        .as<std::string>();
  };
  store::record_set s;
  s.rollout_devices.push_back({4, "e", "installing", at(20)});
  ASSERT_TRUE(w.submit(std::move(s)));
  ASSERT_TRUE(w.flush(10s));
  store::record_set late;
  late.rollout_devices.push_back({4, "e", "downloading", at(19)});
  ASSERT_TRUE(w.submit(std::move(late)));
  ASSERT_TRUE(w.flush(10s));
  EXPECT_EQ(state("e"), "installing");
  store::record_set newer;
  newer.rollout_devices.push_back({4, "e", "success", at(21)});
  ASSERT_TRUE(w.submit(std::move(newer)));
  ASSERT_TRUE(w.flush(10s));
  EXPECT_EQ(state("e"), "success");

  store::writer w2(url(), 1000);
  store::record_set a, b;
  a.rollout_devices.push_back({4, "f", "failed", at(30)});
  b.rollout_devices.push_back({4, "f", "downloading", at(29)});
  ASSERT_TRUE(w2.submit(std::move(a)));
  ASSERT_TRUE(w2.submit(std::move(b)));
  w2.start();
  ASSERT_TRUE(w2.flush(10s));
  EXPECT_EQ(state("f"), "failed");
}

TEST_F(store_test, writer_queue_limit_counts_records) {
  migrate_db();
  store::writer w(url(), 10);
  EXPECT_TRUE(w.submit(events_set("check", 1, 4)));
  EXPECT_TRUE(w.submit(events_set("check", 2, 4)));
  EXPECT_FALSE(w.submit(events_set("check", 3, 4)));  // all of the set or nothing
  EXPECT_TRUE(w.submit(events_set("check", 4, 2)));
  EXPECT_FALSE(w.submit(events_set("check", 5, 1)));
  auto st = w.stats();
  EXPECT_EQ(st.queued, 10u);
  EXPECT_EQ(st.rejected, 2u);
  EXPECT_FALSE(w.flush(50ms));  // not started: nothing written
  w.start();
  ASSERT_TRUE(w.flush(10s));
  EXPECT_EQ(count(url(), "events"), 10);
  EXPECT_TRUE(w.submit(events_set("check", 6, 10)));
  EXPECT_EQ(w.stop(5s), 0u);
  EXPECT_EQ(count(url(), "events"), 20);
  EXPECT_FALSE(w.submit(events_set("check", 7, 1)));  // stopped
}

TEST_F(store_test, writer_data_error_drops_only_the_bad_set) {
  migrate_db();
  std::mutex mu;
  std::vector<int> recorded_n;
  store::writer w(url(), 1000, [&](const std::vector<store::event_record>& evs) {
    std::lock_guard lock(mu);
    for (const auto& e : evs) recorded_n.push_back(e.data["n"].get<int>());
  });
  store::record_set good1 = events_set("check", 1, 2);
  good1.devices.push_back({"d1", "m", "1.0.0", false, {}, at(1)});
  store::record_set bad = events_set("check", 2, 1);
  bad.statuses.push_back({"d1", std::nullopt, "1.0.0", "exploded", std::nullopt, std::nullopt,
                          at(2)});  // violates the state CHECK
  store::record_set good2 = events_set("status", 3, 1);
  good2.devices.push_back({"d2", "m", "1.0.0", false, {}, at(3)});
  store::record_set bad2;
  bad2.events.push_back(event("Not A Kind!", 4));  // violates the kind CHECK
  ASSERT_TRUE(w.submit(std::move(good1)));
  ASSERT_TRUE(w.submit(std::move(bad)));
  ASSERT_TRUE(w.submit(std::move(good2)));
  ASSERT_TRUE(w.submit(std::move(bad2)));
  w.start();  // all four in one batch
  ASSERT_TRUE(w.flush(10s));
  const auto st = w.stats();
  EXPECT_EQ(st.dropped, 3u);
  EXPECT_EQ(st.written, 5u);
  EXPECT_EQ(st.queued, 0u);
  EXPECT_EQ(count(url(), "events"), 3);
  EXPECT_EQ(count(url(), "devices"), 2);
  EXPECT_EQ(count(url(), "status_reports"), 0);
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(recorded_n, (std::vector<int>{100, 101, 300}));
  }
  // And the writer carries on with whole batches afterwards.
  ASSERT_TRUE(w.submit(events_set("check", 5, 3)));
  ASSERT_TRUE(w.flush(10s));
  EXPECT_EQ(count(url(), "events"), 6);
  EXPECT_EQ(w.stop(5s), 0u);
}

TEST_F(store_test, writer_stop_drains_the_queue) {
  migrate_db();
  store::writer w(url(), 100000);
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(w.submit(events_set("check", i, 40)));  // 12000
  w.start();
  EXPECT_EQ(w.stop(30s), 0u);
  EXPECT_EQ(count(url(), "events"), 12000);
  EXPECT_GE(w.stats().batches, 3u);  // at most 5000 records per batch
  EXPECT_FALSE(w.stats().connected);
}

TEST_F(store_test, writer_without_database_accepts_until_the_limit) {
  const auto url = "postgresql://otter@127.0.0.1:" + std::to_string(dead_port()) + "/otter";
  store::writer w(url, 20);
  w.start();
  int accepted = 0;
  while (w.submit(events_set("check", accepted, 3))) ++accepted;
  EXPECT_EQ(accepted, 6);  // 18 records; a 7th set would exceed 20
  EXPECT_TRUE(eventually([&] { return !w.stats().connected; }));
  EXPECT_FALSE(w.flush(300ms));
  const auto st = w.stats();
  EXPECT_EQ(st.queued, 18u);
  EXPECT_EQ(st.rejected, 1u);
  EXPECT_EQ(st.written, 0u);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(w.stop(300ms), 18u);  // gives up at the deadline
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
}

TEST_F(store_test, writer_stops_promptly_when_idle_and_database_away) {
  const auto url = "postgresql://otter@127.0.0.1:" + std::to_string(dead_port()) + "/otter";
  store::writer w(url, 20);
  w.start();
  std::this_thread::sleep_for(150ms);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(w.stop(30s), 0u);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

TEST_F(store_test, writer_survives_database_outage) {
  migrate_db();
  tcp_proxy proxy(db_->admin_url());
  const auto via_proxy = test::url_with_host_port(url(), "127.0.0.1", proxy.port());
  std::atomic<int> recorded{0};
  store::writer w(via_proxy, 1000,
                  [&](const std::vector<store::event_record>& evs) { recorded += evs.size(); });
  w.start();
  ASSERT_TRUE(w.submit(events_set("check", 1, 5)));
  ASSERT_TRUE(w.flush(10s));
  EXPECT_TRUE(w.stats().connected);

  proxy.set_up(false);
  for (int i = 2; i < 6; ++i) ASSERT_TRUE(w.submit(events_set("check", i, 5)));
  EXPECT_TRUE(eventually([&] { return !w.stats().connected; }));
  EXPECT_FALSE(w.flush(300ms));
  EXPECT_GT(w.stats().queued, 0u);

  proxy.set_up(true);
  ASSERT_TRUE(w.flush(20s));
  EXPECT_TRUE(w.stats().connected);
  EXPECT_EQ(count(url(), "events"), 25);  // every set once
  EXPECT_EQ(query(url(), "SELECT count(DISTINCT data->>'n') FROM events")[0][0].as<int>(), 25);
  EXPECT_EQ(recorded.load(), 25);
  EXPECT_EQ(w.stats().dropped, 0u);
  EXPECT_EQ(w.stop(5s), 0u);
}

// The connection drops during COMMIT: the writer asks PostgreSQL whether that transaction
// committed instead of guessing, so the batch is written exactly once either way.
TEST_F(store_test, writer_commit_in_doubt_is_written_exactly_once) {
  migrate_db();
  tcp_proxy proxy(db_->admin_url());
  const auto via_proxy = test::url_with_host_port(url(), "127.0.0.1", proxy.port());
  int base = 0;
  for (const bool commit_arrives : {true, false}) {
    SCOPED_TRACE(commit_arrives ? "commit arrived" : "commit lost");
    std::mutex mu;
    std::vector<std::int64_t> recorded;
    store::writer w(via_proxy, 1000, [&](const std::vector<store::event_record>& evs) {
      std::lock_guard lock(mu);
      for (const auto& e : evs) recorded.push_back(e.id);
    });
    w.start();
    ASSERT_TRUE(eventually([&] { return w.stats().connected; }));
    proxy.cut_next_commit(commit_arrives);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(w.submit(events_set("check", base + i, 2)));
    ASSERT_TRUE(w.flush(20s));
    base += 3;
    EXPECT_EQ(count(url(), "events"), base * 2);
    std::vector<std::int64_t> in_db;
    for (const auto& r : query(url(), "SELECT id FROM events ORDER BY id"))
      in_db.push_back(r[0].as<std::int64_t>());
    std::lock_guard lock(mu);
    ASSERT_EQ(recorded.size(), 6u);
    // What on_recorded saw is what the database holds (the ids of the attempt that committed).
    EXPECT_EQ(std::vector<std::int64_t>(in_db.end() - 6, in_db.end()), recorded);
    EXPECT_EQ(w.stats().dropped, 0u);
    EXPECT_EQ(w.stop(5s), 0u);
  }
}

// ---------------------------------------------------------------------------------------------
// repository: uploads and releases

TEST_F(store_test, open_migrates_and_uploads_are_idempotent) {
  auto repo = open_repo();
  EXPECT_EQ(count(url(), "otter_migrations"),
            static_cast<std::int64_t>(store::embedded_migrations().size()));
  auto a = repo->add_upload(sha(1), 1234, "alice");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(*a, (nlohmann::json{{"sha256", sha(1)}, {"size", 1234}}));
  auto b = repo->add_upload(sha(1), 1234, "bob");
  ASSERT_TRUE(b);
  EXPECT_EQ(*b, *a);
  EXPECT_EQ(count(url(), "uploads"), 1);
  std::uint64_t size = 0;
  auto e = repo->upload_exists(sha(1), &size);
  ASSERT_TRUE(e);
  EXPECT_TRUE(*e);
  EXPECT_EQ(size, 1234u);
  auto n = repo->upload_exists(sha(2), nullptr);
  ASSERT_TRUE(n);
  EXPECT_FALSE(*n);
}

// Instances sharing one data folder: an upload and the collection of the same image take the
// image's lock, so that the collection never removes the file of an image uploaded again in
// between (the row would then name a file that is gone).
TEST_F(store_test, upload_and_its_collection_take_the_images_lock) {
  auto repo = open_repo();
  auto other = open_repo();
  ASSERT_TRUE(repo->add_upload(sha(1), 10, "alice"));
  pqxx::connection holder{url()};
  // `op` runs on a thread while another connection holds the image's lock: it must wait.
  const auto waits_for_the_lock = [&](const std::function<void()>& op, const char* what) {
    pqxx::work hold{holder};
    hold.exec_params("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                     "otter-image:" + sha(1));
    std::atomic<bool> done{false};
    std::thread t([&] {
      op();
      done = true;
    });
    std::this_thread::sleep_for(300ms);
    EXPECT_FALSE(done.load()) << what << " went past the image's lock";
    hold.commit();
    t.join();
  };

  std::atomic<int> ensured{0};
  waits_for_the_lock(
      [&] {
        auto r = other->add_upload(sha(1), 10, "bob", [&](const std::string&) -> result<void> {
          ++ensured;
          return {};
        });
        EXPECT_TRUE(r) << r.error().message;
      },
      "the upload");
  EXPECT_EQ(ensured.load(), 1);

  std::vector<std::string> removed;
  waits_for_the_lock(
      [&] {
        auto r = other->delete_unreferenced_uploads(std::chrono::system_clock::now() + 1h,
                                                    [&](const std::string& s) -> result<void> {
                                                      removed.push_back(s);
                                                      return {};
                                                    });
        EXPECT_TRUE(r);
      },
      "the collection");
  EXPECT_EQ(removed, std::vector<std::string>{sha(1)});
  EXPECT_EQ(count(url(), "uploads"), 0);
}

// A file step that fails undoes its row: an upload whose file cannot be made is not recorded,
// a collection that cannot remove the file keeps the row.
TEST_F(store_test, a_failed_file_step_undoes_the_uploads_row_change) {
  auto repo = open_repo();
  const auto fail = [](const std::string&) -> result<void> {
    return make_error(errc::internal, "disk full");
  };
  auto r = repo->add_upload(sha(2), 10, "alice", fail);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "disk full");
  EXPECT_EQ(count(url(), "uploads"), 0);
  ASSERT_TRUE(repo->add_upload(sha(3), 10, "alice"));
  auto gone = repo->delete_unreferenced_uploads(std::chrono::system_clock::now() + 1h, fail);
  ASSERT_TRUE(gone);
  EXPECT_TRUE(gone->empty());
  EXPECT_EQ(count(url(), "uploads"), 1);
}

TEST_F(store_test, releases_add_get_conflict_and_missing_upload) {
  auto repo = open_repo();
  ASSERT_TRUE(repo->add_upload(sha(1), 4096, "alice"));

  protocol::release_add_args a;
  a.model = "esp32";
  a.version = ver("1.1.0+b7");
  a.sha256 = sha(1);
  a.min_version = ver("1.0.0");
  a.notes = "fixes";
  a.image_sig = "c2ln";
  auto r = repo->add_release(a, 999, "alice");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)["model"], "esp32");
  EXPECT_EQ((*r)["version"], "1.1.0+b7");
  EXPECT_EQ((*r)["sha256"], sha(1));
  EXPECT_EQ((*r)["size"], 4096);  // the upload's size
  EXPECT_EQ((*r)["min_version"], "1.0.0");
  EXPECT_EQ((*r)["notes"], "fixes");
  EXPECT_EQ((*r)["signed"], true);
  EXPECT_EQ((*r)["image_sig"], "c2ln");
  ASSERT_TRUE((*r)["created_at"].is_string());
  EXPECT_EQ((*r)["created_at"].get<std::string>().size(), 24u);
  EXPECT_EQ((*r)["created_at"].get<std::string>().back(), 'Z');

  // 1.1.0 is the same release as 1.1.0+b7.
  a.version = ver("1.1.0");
  auto dup = repo->add_release(a, 0, "alice");
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, errc::conflict);
  EXPECT_EQ(dup.error().message, "release esp32 1.1.0+b7 exists");
  // Another model may have it.
  a.model = "esp8266";
  a.image_sig.reset();
  auto other = repo->add_release(a, 0, "alice");
  ASSERT_TRUE(other);
  EXPECT_EQ((*other)["signed"], false);
  EXPECT_TRUE((*other)["image_sig"].is_null());

  a.version = ver("2.0.0");
  a.sha256 = sha(9);
  auto missing = repo->add_release(a, 0, "alice");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, errc::not_found);
  EXPECT_EQ(missing.error().message,
            "no upload with sha256 " + sha(9) + "; upload the image first");

  auto g = repo->get_release("esp32", ver("1.1.0+other").value);
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_EQ((*g)["version"], "1.1.0+b7");
  auto nf = repo->get_release("esp32", ver("9.9.9").value);
  ASSERT_FALSE(nf);
  EXPECT_EQ(nf.error().code, errc::not_found);
}

TEST_F(store_test, release_list_pages_newest_first) {
  auto repo = open_repo();
  ASSERT_TRUE(repo->add_upload(sha(1), 10, "alice"));
  for (int i = 0; i < 250; ++i) {
    protocol::release_add_args a;
    a.model = i % 5 == 0 ? "other" : "esp32";
    a.version = ver("1.0." + std::to_string(i));
    a.sha256 = sha(1);
    ASSERT_TRUE(repo->add_release(a, 10, "alice"));
  }
  protocol::release_list_args args;
  args.page.limit = 100;
  std::vector<std::string> seen;
  int pages = 0;
  for (;;) {
    auto p = repo->list_releases(args);
    ASSERT_TRUE(p) << p.error().message;
    ++pages;
    for (const auto& item : p->items) seen.push_back(item["version"].get<std::string>());
    const auto j = p->to_json();
    ASSERT_TRUE(j.contains("items"));
    ASSERT_TRUE(j.contains("next"));
    if (!p->next) {
      EXPECT_TRUE(j["next"].is_null());
      break;
    }
    EXPECT_TRUE(j["next"].is_string());
    args.page.after = std::stoll(*p->next);
    ASSERT_LT(pages, 10);
  }
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(seen.size(), 250u);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), 250u);
  for (int i = 0; i < 250; ++i) EXPECT_EQ(seen[i], "1.0." + std::to_string(249 - i));

  protocol::release_list_args filtered;
  filtered.model = "other";
  filtered.page.limit = 1000;
  auto f = repo->list_releases(filtered);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->items.size(), 50u);
  EXPECT_FALSE(f->next);
  for (const auto& item : f->items) EXPECT_EQ(item["model"], "other");

  // Exactly a page's worth: no next.
  filtered.page.limit = 50;
  auto exact = repo->list_releases(filtered);
  ASSERT_TRUE(exact);
  EXPECT_EQ(exact->items.size(), 50u);
  EXPECT_FALSE(exact->next);
  filtered.page.limit = 49;
  auto short_page = repo->list_releases(filtered);
  ASSERT_TRUE(short_page);
  EXPECT_TRUE(short_page->next);
}

// ---------------------------------------------------------------------------------------------
// repository: rollouts

TEST_F(store_test, rollout_create_get_and_counts) {
  auto repo = open_repo();
  add_release(*repo, "esp32", "1.1.0+b7", 1);

  protocol::rollout_create_args a;
  a.name = "canary";
  a.model = "esp32";
  a.version = ver("1.1.0");
  a.tgt = *protocol::parse_target({{"type", "percent"}, {"percent", 12.5}});
  a.allow_downgrade = true;
  auto r = repo->create_rollout(a, "alice");
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_TRUE((*r)["id"].is_string());
  EXPECT_EQ((*r)["name"], "canary");
  EXPECT_EQ((*r)["model"], "esp32");
  EXPECT_EQ((*r)["version"], "1.1.0+b7");
  EXPECT_EQ((*r)["target"], (nlohmann::json{{"type", "percent"}, {"percent", 12.5}}));
  EXPECT_EQ((*r)["state"], "active");
  EXPECT_EQ((*r)["allow_downgrade"], true);
  EXPECT_EQ((*r)["created_by"], "alice");
  EXPECT_TRUE((*r)["reason"].is_null());
  EXPECT_FALSE(r->contains("counts"));
  const auto id = std::stoll((*r)["id"].get<std::string>());

  a.version = ver("3.0.0");
  auto nf = repo->create_rollout(a, "alice");
  ASSERT_FALSE(nf);
  EXPECT_EQ(nf.error().code, errc::not_found);

  auto g = repo->get_rollout(id, true);
  ASSERT_TRUE(g) << g.error().message;
  const nlohmann::json zero = {{"offered", 0},    {"downloading", 0}, {"verifying", 0},
                               {"installing", 0}, {"success", 0},     {"failed", 0},
                               {"rejected", 0},   {"rolled_back", 0}};
  EXPECT_EQ((*g)["counts"], zero);

  store::writer w(url(), 1000);
  w.start();
  store::record_set s;
  s.rollout_devices.push_back({id, "a", "offered", at(1)});
  s.rollout_devices.push_back({id, "b", "offered", at(1)});
  s.rollout_devices.push_back({id, "c", "offered", at(1)});
  s.rollout_devices.push_back({id, "d", "success", at(1)});     // reported without an offer
  s.rollout_devices.push_back({id + 1, "a", "failed", at(1)});  // another rollout
  ASSERT_TRUE(w.submit(std::move(s)));
  store::record_set s2;
  s2.rollout_devices.push_back({id, "a", "downloading", at(2)});
  s2.rollout_devices.push_back({id, "b", "success", at(2)});
  ASSERT_TRUE(w.submit(std::move(s2)));
  ASSERT_TRUE(w.flush(10s));
  g = repo->get_rollout(id, true);
  ASSERT_TRUE(g);
  auto expected = zero;
  expected["offered"] = 3;
  expected["downloading"] = 1;
  expected["success"] = 2;
  EXPECT_EQ((*g)["counts"], expected);
  EXPECT_FALSE(repo->get_rollout(id, false)->contains("counts"));

  auto missing = repo->get_rollout(id + 100, true);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, errc::not_found);
}

TEST_F(store_test, rollout_percent_grows_and_narrows) {
  auto repo = open_repo();
  add_release(*repo, "esp32", "1.1.0", 1);
  const auto pct = create_rollout(*repo, "esp32", "1.1.0", {{"type", "percent"}, {"percent", 10}});
  const auto all = create_rollout(*repo, "esp32", "1.1.0", {{"type", "all"}});

  auto up = repo->update_rollout_percent(pct, 2550, "alice");
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ((*up)["target"], (nlohmann::json{{"type", "percent"}, {"percent", 25.5}}));
  auto same = repo->update_rollout_percent(pct, 2550, "alice");
  ASSERT_TRUE(same);

  auto down = repo->update_rollout_percent(pct, 1000, "alice");
  ASSERT_TRUE(down) << down.error().message;
  EXPECT_EQ((*down)["target"], (nlohmann::json{{"type", "percent"}, {"percent", 10}}));

  auto wrong = repo->update_rollout_percent(all, 5000, "alice");
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, errc::bad_request);
  EXPECT_EQ(wrong.error().message, "rollout " + std::to_string(all) + " is not a percent rollout");

  auto missing = repo->update_rollout_percent(all + 50, 5000, "alice");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, errc::not_found);

  ASSERT_TRUE(repo->set_rollout_state(pct, protocol::rollout_state::paused, "hold", "alice"));
  auto paused_up = repo->update_rollout_percent(pct, 10000, "alice");  // paused may still widen
  ASSERT_TRUE(paused_up);
  EXPECT_EQ((*paused_up)["target"]["percent"], 100);

  ASSERT_TRUE(repo->set_rollout_state(pct, protocol::rollout_state::cancelled, {}, "alice"));
  auto cancelled = repo->update_rollout_percent(pct, 10000, "alice");
  ASSERT_FALSE(cancelled);
  EXPECT_EQ(cancelled.error().code, errc::conflict);
}

TEST_F(store_test, rollout_state_transitions) {
  auto repo = open_repo();
  add_release(*repo, "esp32", "1.1.0", 1);
  const auto id = create_rollout(*repo, "esp32", "1.1.0", {{"type", "all"}});
  using protocol::rollout_state;

  auto p = repo->set_rollout_state(id, rollout_state::paused, "bad batch", "alice");
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ((*p)["state"], "paused");
  EXPECT_EQ((*p)["reason"], "bad batch");
  ASSERT_TRUE((*p)["updated_at"].is_string());
  auto p2 = repo->set_rollout_state(id, rollout_state::paused, std::nullopt, "alice");
  ASSERT_TRUE(p2);  // idempotent: the reason and the time of the pause stay
  EXPECT_EQ((*p2)["state"], "paused");
  EXPECT_EQ((*p2)["reason"], "bad batch");
  EXPECT_EQ((*p2)["updated_at"], (*p)["updated_at"]);
  auto p3 = repo->set_rollout_state(id, rollout_state::paused, "worse", "alice");
  ASSERT_TRUE(p3);  // a new reason is taken
  EXPECT_EQ((*p3)["reason"], "worse");

  auto r = repo->set_rollout_state(id, rollout_state::active, std::nullopt, "alice");
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["state"], "active");
  EXPECT_TRUE((*r)["reason"].is_null());

  auto c = repo->set_rollout_state(id, rollout_state::cancelled, "done", "alice");
  ASSERT_TRUE(c);
  EXPECT_EQ((*c)["state"], "cancelled");
  auto c2 = repo->set_rollout_state(id, rollout_state::cancelled, "again", "alice");
  ASSERT_TRUE(c2);  // cancelling a cancelled rollout is fine and changes nothing
  EXPECT_EQ((*c2)["reason"], "done");

  for (auto s : {rollout_state::active, rollout_state::paused}) {
    auto bad = repo->set_rollout_state(id, s, std::nullopt, "alice");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, errc::conflict);
    EXPECT_EQ(bad.error().message, "rollout " + std::to_string(id) + " is cancelled");
  }
  auto nf = repo->set_rollout_state(id + 9, rollout_state::paused, std::nullopt, "alice");
  ASSERT_FALSE(nf);
  EXPECT_EQ(nf.error().code, errc::not_found);
}

TEST_F(store_test, rollout_list_filters_and_pages) {
  auto repo = open_repo();
  add_release(*repo, "esp32", "1.1.0", 1);
  add_release(*repo, "esp8266", "1.1.0", 2);
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 7; ++i)
    ids.push_back(create_rollout(*repo, i % 2 ? "esp8266" : "esp32", "1.1.0", {{"type", "all"}},
                                 "r" + std::to_string(i)));
  ASSERT_TRUE(repo->set_rollout_state(ids[0], protocol::rollout_state::paused, {}, "a"));
  ASSERT_TRUE(repo->set_rollout_state(ids[2], protocol::rollout_state::cancelled, {}, "a"));

  protocol::rollout_list_args a;
  a.page.limit = 3;
  auto p1 = repo->list_rollouts(a);
  ASSERT_TRUE(p1) << p1.error().message;
  ASSERT_EQ(p1->items.size(), 3u);
  EXPECT_EQ(p1->items[0]["id"], std::to_string(ids[6]));
  ASSERT_TRUE(p1->next);
  EXPECT_EQ(*p1->next, std::to_string(ids[4]));
  a.page.after = std::stoll(*p1->next);
  auto p2 = repo->list_rollouts(a);
  ASSERT_TRUE(p2);
  EXPECT_EQ(p2->items[0]["id"], std::to_string(ids[3]));

  protocol::rollout_list_args f;
  f.model = "esp32";
  auto by_model = repo->list_rollouts(f);
  ASSERT_TRUE(by_model);
  EXPECT_EQ(by_model->items.size(), 4u);
  f.state = protocol::rollout_state::active;
  auto active_esp32 = repo->list_rollouts(f);
  ASSERT_TRUE(active_esp32);
  ASSERT_EQ(active_esp32->items.size(), 2u);  // ids 4 and 6
  EXPECT_EQ(active_esp32->items[0]["id"], std::to_string(ids[6]));
  EXPECT_EQ(active_esp32->items[1]["id"], std::to_string(ids[4]));
  protocol::rollout_list_args c;
  c.state = protocol::rollout_state::cancelled;
  auto cancelled = repo->list_rollouts(c);
  ASSERT_TRUE(cancelled);
  ASSERT_EQ(cancelled->items.size(), 1u);
  EXPECT_EQ(cancelled->items[0]["id"], std::to_string(ids[2]));
}

// ---------------------------------------------------------------------------------------------
// repository: devices, status reports, events

TEST_F(store_test, devices_status_and_events_listing) {
  auto repo = open_repo();
  store::writer w(url(), 10000);
  w.start();
  for (int i = 0; i < 12; ++i) {
    store::record_set s;
    const auto dev = "dev-" + std::to_string(i);
    s.devices.push_back({dev,
                         i < 8 ? "esp32" : "esp8266",
                         i % 2 ? "1.0.0" : "1.1.0",
                         i == 0,
                         {{"site", "a"}},
                         at(i)});
    s.statuses.push_back({dev, i % 3 == 0 ? std::optional<std::int64_t>{5} : std::nullopt, "1.1.0",
                          i % 2 ? "downloading" : "success",
                          i % 2 ? std::optional<int>{i} : std::nullopt, std::nullopt, at(i)});
    s.events.push_back(event(i % 2 ? "check" : "status", i, dev, std::nullopt, at(i * 10)));
    ASSERT_TRUE(w.submit(std::move(s)));
  }
  ASSERT_TRUE(w.flush(10s));

  // devices: registration order, cursor = seq
  protocol::device_list_args d;
  d.page.limit = 5;
  std::vector<std::string> ids;
  for (int guard = 0; guard < 10; ++guard) {
    auto p = repo->list_devices(d);
    ASSERT_TRUE(p) << p.error().message;
    for (const auto& item : p->items) ids.push_back(item["id"]);
    if (!p->next) break;
    d.page.after = std::stoll(*p->next);
  }
  ASSERT_EQ(ids.size(), 12u);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(ids[i], "dev-" + std::to_string(i));

  protocol::device_list_args df;
  df.model = "esp32";
  df.version = "1.0.0";
  auto filtered = repo->list_devices(df);
  ASSERT_TRUE(filtered);
  EXPECT_EQ(filtered->items.size(), 4u);  // 1, 3, 5, 7

  auto dev0 = repo->get_device("dev-0");
  ASSERT_TRUE(dev0) << dev0.error().message;
  EXPECT_EQ((*dev0)["model"], "esp32");
  EXPECT_EQ((*dev0)["version"], "1.1.0");
  EXPECT_EQ((*dev0)["attrs"], (nlohmann::json{{"site", "a"}}));
  EXPECT_EQ((*dev0)["first_seen"], "2026-11-27T21:00:00.000Z");
  EXPECT_EQ((*dev0)["last_seen"], "2026-11-27T21:00:00.000Z");
  EXPECT_EQ((*repo->get_device("dev-1"))["attrs"], nlohmann::json::object());
  auto nodev = repo->get_device("nope");
  ASSERT_FALSE(nodev);
  EXPECT_EQ(nodev.error().code, errc::not_found);

  // status reports: newest first, filters
  protocol::status_list_args s;
  auto all = repo->list_status(s);
  ASSERT_TRUE(all) << all.error().message;
  ASSERT_EQ(all->items.size(), 12u);
  EXPECT_EQ(all->items[0]["device"], "dev-11");
  EXPECT_EQ(all->items[0]["state"], "downloading");
  EXPECT_EQ(all->items[0]["progress"], 11);
  EXPECT_TRUE(all->items[0]["rollout"].is_null());
  EXPECT_TRUE(all->items[0]["error"].is_null());
  EXPECT_EQ(all->items[0]["at"], "2026-11-27T21:00:11.000Z");
  EXPECT_EQ(all->items[11]["rollout"], "5");
  protocol::status_list_args sf;
  sf.rollout = 5;
  sf.state = protocol::status_state::success;
  auto by = repo->list_status(sf);
  ASSERT_TRUE(by);
  ASSERT_EQ(by->items.size(), 2u);  // 0 and 6
  EXPECT_EQ(by->items[0]["device"], "dev-6");
  protocol::status_list_args sd;
  sd.device = "dev-3";
  EXPECT_EQ(repo->list_status(sd)->items.size(), 1u);
  protocol::status_list_args sp;
  sp.page.limit = 5;
  auto sp1 = repo->list_status(sp);
  ASSERT_TRUE(sp1 && sp1->next);
  sp.page.after = std::stoll(*sp1->next);
  auto sp2 = repo->list_status(sp);
  ASSERT_TRUE(sp2);
  EXPECT_EQ(sp2->items[0]["device"], "dev-6");

  // events: newest first, filters, since
  protocol::events_list_args e;
  e.page.limit = 100;
  auto evs = repo->list_events(e);
  ASSERT_TRUE(evs) << evs.error().message;
  ASSERT_EQ(evs->items.size(), 12u);
  EXPECT_EQ(evs->items[0]["device"], "dev-11");
  EXPECT_TRUE(evs->items[0]["id"].is_string());  // ids are strings of digits on the wire
  EXPECT_EQ(evs->items[0]["data"], (nlohmann::json{{"n", 11}}));
  EXPECT_EQ(evs->items[0]["at"], "2026-11-27T21:01:50.000Z");
  EXPECT_GT(std::stoll(evs->items[0]["id"].get<std::string>()),
            std::stoll(evs->items[1]["id"].get<std::string>()));
  protocol::events_list_args ek;
  ek.kind = "check";
  EXPECT_EQ(repo->list_events(ek)->items.size(), 6u);
  ek.device = "dev-3";
  EXPECT_EQ(repo->list_events(ek)->items.size(), 1u);
  ek.device = "dev-2";
  EXPECT_EQ(repo->list_events(ek)->items.size(), 0u);
  protocol::events_list_args es;
  es.since = std::chrono::duration_cast<std::chrono::seconds>(at(60).time_since_epoch()).count();
  auto recent = repo->list_events(es);
  ASSERT_TRUE(recent);
  EXPECT_EQ(recent->items.size(), 6u);  // at 60, 70, ..., 110
  EXPECT_EQ(recent->items.back()["at"], "2026-11-27T21:01:00.000Z");
}

// ---------------------------------------------------------------------------------------------
// repository: start-up loads

TEST_F(store_test, prune_events_removes_old_events_oldest_first_and_keeps_the_audit_trail) {
  auto repo = open_repo();
  const std::vector<std::string> kept = {"release.add", "rollout.pause"};
  // Old events, among them the audit trail (a successful change, a successful upload) and
  // what is not (a read, a refused change, a refused upload, a command row without "ok" or
  // "cmd"); then a young one, one from a clock running an hour ahead, and an old one recorded
  // after them (a late batch).
  query(url(),
        "INSERT INTO events (at, kind, device, actor, data) VALUES "
        "(now() - interval '50 days', 'check', 'd1', NULL, '{}'), "
        "(now() - interval '49 days', 'command', NULL, 'alice', "
        "  '{\"cmd\": \"rollout.pause\", \"ok\": true}'), "
        "(now() - interval '48 days', 'command', NULL, 'bob', "
        "  '{\"cmd\": \"metrics.get\", \"ok\": true}'), "
        "(now() - interval '47 days', 'command', NULL, 'carol', "
        "  '{\"cmd\": \"release.add\", \"ok\": false}'), "
        "(now() - interval '46 days', 'command', NULL, 'dave', '{}'), "
        "(now() - interval '45 days', 'upload', NULL, 'alice', '{\"ok\": true}'), "
        "(now() - interval '44 days', 'upload', NULL, 'erin', '{\"ok\": false}'), "
        "(now() - interval '40 days', 'offer', 'd1', NULL, '{}'), "
        "(now() - interval '1 day', 'check', 'd2', NULL, '{}'), "
        "(now() + interval '1 hour', 'check', 'd3', NULL, '{}'), "
        "(now() - interval '35 days', 'check', 'd4', NULL, '{}')");
  const auto rows = [&] {
    std::vector<std::string> out;
    for (const auto& r :
         query(url(), "SELECT kind || ':' || coalesce(device, actor) FROM events ORDER BY id"))
      out.push_back(r[0].as<std::string>());
    return out;
  };
  const auto cutoff = std::chrono::system_clock::now() - std::chrono::days{30};

  // A batch of 3 takes the three oldest that may go; a full batch may have more behind it.
  auto s1 = repo->prune_events(cutoff, 3, kept);
  ASSERT_TRUE(s1) << s1.error().message;
  EXPECT_EQ(s1->removed, 3u);
  EXPECT_TRUE(s1->more);
  EXPECT_FALSE(s1->skipped);
  EXPECT_EQ(rows(), (std::vector<std::string>{"command:alice", "command:dave", "upload:alice",
                                              "upload:erin", "offer:d1", "check:d2", "check:d3",
                                              "check:d4"}));

  // The rest, the late one included; the young and the one from the future stay.
  auto s2 = repo->prune_events(cutoff, 100, kept);
  ASSERT_TRUE(s2) << s2.error().message;
  EXPECT_EQ(s2->removed, 4u);
  EXPECT_FALSE(s2->more);
  EXPECT_EQ(rows(),
            (std::vector<std::string>{"command:alice", "upload:alice", "check:d2", "check:d3"}));

  auto s3 = repo->prune_events(cutoff, 100, kept);
  ASSERT_TRUE(s3);
  EXPECT_EQ(s3->removed, 0u);
  EXPECT_FALSE(s3->more);

  // Without kept commands only uploads stay; a name that would need quoting is refused.
  auto s4 = repo->prune_events(std::chrono::system_clock::now() + std::chrono::days{1}, 100, {});
  ASSERT_TRUE(s4);
  EXPECT_EQ(s4->removed, 3u);
  EXPECT_EQ(rows(), (std::vector<std::string>{"upload:alice"}));
  EXPECT_THROW((void)repo->prune_events(cutoff, 10, {"a\"b"}), std::invalid_argument);
  EXPECT_THROW((void)repo->prune_events(cutoff, 0, kept), std::invalid_argument);
}

TEST_F(store_test, prune_events_skips_while_another_instance_prunes) {
  auto repo = open_repo();
  query(url(),
        "INSERT INTO events (at, kind, device) VALUES (now() - interval '40 days', "
        "'check', 'd1')");
  const auto cutoff = std::chrono::system_clock::now() - std::chrono::days{30};
  {
    pqxx::connection other{url()};
    pqxx::work tx{other};
    tx.exec("SELECT pg_advisory_xact_lock(hashtextextended('otter-prune-events', 0))");
    auto step = repo->prune_events(cutoff, 10, {});
    ASSERT_TRUE(step) << step.error().message;
    EXPECT_TRUE(step->skipped);
    EXPECT_EQ(step->removed, 0u);
  }
  auto step = repo->prune_events(cutoff, 10, {});
  ASSERT_TRUE(step);
  EXPECT_FALSE(step->skipped);
  EXPECT_EQ(step->removed, 1u);
  EXPECT_EQ(count(url(), "events"), 0);
}

TEST_F(store_test, load_catalog_round_trip) {
  auto repo = open_repo();
  add_release(*repo, "esp32", "1.1.0+b7", 1, "1.0.0");
  add_release(*repo, "esp32", "1.2.0-rc.1", 2);
  add_release(*repo, "esp8266", "2.0.0", 3);
  const auto r1 = create_rollout(*repo, "esp32", "1.1.0", {{"type", "percent"}, {"percent", 5}});
  const auto r2 =
      create_rollout(*repo, "esp32", "1.2.0-rc.1", {{"type", "devices"}, {"ids", {"a", "b"}}});
  const auto r3 =
      create_rollout(*repo, "esp8266", "2.0.0", {{"type", "group"}, {"attrs", {{"site", "w3"}}}});
  const auto r4 = create_rollout(*repo, "esp8266", "2.0.0", {{"type", "all"}});
  ASSERT_TRUE(repo->set_rollout_state(r3, protocol::rollout_state::paused, {}, "a"));
  ASSERT_TRUE(repo->set_rollout_state(r4, protocol::rollout_state::cancelled, {}, "a"));

  const auto cat = repo->load_catalog();
  ASSERT_EQ(cat.releases.size(), 3u);
  EXPECT_EQ(cat.releases[0].version_text, "1.1.0+b7");
  EXPECT_EQ(cat.releases[0].version.canonical(), "1.1.0");
  ASSERT_TRUE(cat.releases[0].min_version);
  EXPECT_EQ(cat.releases[0].min_version->canonical(), "1.0.0");
  EXPECT_EQ(cat.releases[0].sha256, sha(1));
  EXPECT_EQ(cat.releases[0].size, 1001u);
  EXPECT_FALSE(cat.releases[1].min_version);
  ASSERT_EQ(cat.rollouts.size(), 3u);  // the cancelled one is not loaded
  EXPECT_EQ(cat.rollouts[0].id, r1);
  EXPECT_EQ(cat.rollouts[0].id_text, std::to_string(r1));
  EXPECT_EQ(cat.rollouts[0].tgt.type, protocol::target::kind::percent);
  EXPECT_EQ(cat.rollouts[0].tgt.basis_points, 500u);
  EXPECT_EQ(cat.rollouts[1].id, r2);
  EXPECT_EQ(cat.rollouts[1].tgt.ids, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(cat.rollouts[2].state, protocol::rollout_state::paused);
  EXPECT_EQ(cat.rollouts[2].tgt.attrs.at("site"), "w3");
  ASSERT_NE(cat.find_release(cat.rollouts[2].release_id), nullptr);
  EXPECT_EQ(cat.find_release(cat.rollouts[2].release_id)->model, "esp8266");
  EXPECT_EQ(cat.rollouts_of_model("esp32").size(), 2u);
  EXPECT_EQ(cat.rollouts_of_model("esp8266").size(), 1u);

  // A row that no longer parses is skipped, not fatal.
  query(url(), "UPDATE releases SET version = 'garbage' WHERE model = 'esp8266'");
  const auto cat2 = repo->load_catalog();
  EXPECT_EQ(cat2.releases.size(), 2u);
  EXPECT_EQ(cat2.rollouts.size(), 2u);  // r3's release is gone
}

TEST_F(store_test, load_devices_with_their_rollouts) {
  auto repo = open_repo();
  add_release(*repo, "esp32", "1.1.0+b7", 1);
  const auto r1 = create_rollout(*repo, "esp32", "1.1.0", {{"type", "all"}});
  store::writer w(url(), 1000);
  w.start();
  store::record_set s;
  s.devices.push_back({"a", "esp32", "1.0.0", true, {{"site", "w3"}}, at(1)});
  s.devices.push_back({"b", "esp32", "1.0.0", false, {}, at(2)});
  s.rollout_devices.push_back({r1, "a", "offered", at(3)});
  s.rollout_devices.push_back({r1, "a", "installing", at(4)});
  ASSERT_TRUE(w.submit(std::move(s)));
  ASSERT_TRUE(w.flush(10s));
  const auto devs = repo->load_devices();
  ASSERT_EQ(devs.size(), 2u);
  EXPECT_EQ(devs[0].id, "a");
  EXPECT_EQ(devs[0].model, "esp32");
  EXPECT_EQ(devs[0].version, "1.0.0");
  EXPECT_EQ(devs[0].attrs, (nlohmann::json{{"site", "w3"}}));
  ASSERT_EQ(devs[0].rollouts.size(), 1u);
  EXPECT_EQ(devs[0].rollouts[0].rollout, r1);
  EXPECT_EQ(devs[0].rollouts[0].version, "1.1.0+b7");
  EXPECT_EQ(devs[0].rollouts[0].state, "installing");
  EXPECT_TRUE(devs[1].rollouts.empty());
}

// ---------------------------------------------------------------------------------------------
// repository: PostgreSQL away

TEST_F(store_test, repository_reports_unavailable_and_recovers) {
  {
    store::repository dead("postgresql://otter@127.0.0.1:" + std::to_string(dead_port()) +
                           "/otter");
    auto r = dead.get_device("x");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::unavailable);
    EXPECT_EQ(r.error().message.rfind("database unavailable: ", 0), 0u) << r.error().message;
    EXPECT_THROW(dead.open(), pqxx::broken_connection);
    EXPECT_THROW(dead.load_catalog(), pqxx::broken_connection);
  }
  migrate_db();
  tcp_proxy proxy(db_->admin_url());
  store::repository repo(test::url_with_host_port(url(), "127.0.0.1", proxy.port()));
  ASSERT_TRUE(repo.add_upload(sha(1), 1, "a"));
  proxy.set_up(false);
  auto down = repo.add_upload(sha(2), 1, "a");
  ASSERT_FALSE(down);
  EXPECT_EQ(down.error().code, errc::unavailable);
  proxy.set_up(true);
  auto back = repo.add_upload(sha(2), 1, "a");
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(count(url(), "uploads"), 2);
}

TEST_F(store_test, database_errors_do_not_leak_details) {
  auto repo = open_repo();
  protocol::rollout_create_args a;
  a.name = std::string(200, 'x');  // violates the name CHECK, which the parser would refuse
  a.model = "esp32";
  a.version = ver("1.0.0");
  a.tgt = *protocol::parse_target({{"type", "all"}});
  add_release(*repo, "esp32", "1.0.0", 1);
  auto r = repo->create_rollout(a, "alice");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::internal);
  EXPECT_EQ(r.error().message, "database error");
  // The connection stays usable.
  EXPECT_TRUE(repo->get_release("esp32", ver("1.0.0").value));
}

// ---------------------------------------------------------------------------------------------
// listener

TEST_F(store_test, listener_hears_another_connections_change) {
  auto repo = open_repo();
  std::atomic<int> changes{0};
  store::listener_handlers h;
  h.on_change = [&] { ++changes; };
  store::listener l(url(), std::move(h));
  l.start();
  ASSERT_TRUE(eventually([&] { return changes.load() >= 1; }));  // once after connecting
  std::this_thread::sleep_for(100ms);
  const int before = changes.load();
  add_release(*repo, "esp32", "1.1.0", 1);  // releases trigger
  ASSERT_TRUE(eventually([&] { return changes.load() > before; }));
  const int mid = changes.load();
  create_rollout(*repo, "esp32", "1.1.0", {{"type", "all"}});  // rollouts trigger
  ASSERT_TRUE(eventually([&] { return changes.load() > mid; }));
  const auto t0 = std::chrono::steady_clock::now();
  l.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

TEST_F(store_test, listener_reconnects) {
  auto repo = open_repo();
  tcp_proxy proxy(db_->admin_url());
  std::atomic<int> changes{0};
  std::atomic<int> reconnects{0};
  store::listener_handlers h;
  h.on_change = [&] { ++changes; };
  h.on_grants = [](const std::string&) {};
  h.on_connect = [&] { ++reconnects; };
  store::listener l(test::url_with_host_port(url(), "127.0.0.1", proxy.port()), std::move(h));
  l.start();
  ASSERT_TRUE(eventually([&] { return changes.load() >= 1; }));
  ASSERT_TRUE(eventually([&] { return reconnects.load() == 1; })) << "the first connect counts";
  proxy.set_up(false);
  std::this_thread::sleep_for(400ms);
  const int during = changes.load();
  proxy.set_up(true);
  // Once after the reconnect: a change may have been missed while away, and grants too.
  ASSERT_TRUE(eventually([&] { return changes.load() > during; }, 15s));
  ASSERT_TRUE(eventually([&] { return reconnects.load() == 2; }));
  std::this_thread::sleep_for(200ms);
  const int after = changes.load();
  add_release(*repo, "esp32", "1.1.0", 1);
  ASSERT_TRUE(eventually([&] { return changes.load() > after; }));
  l.stop();
}

}  // namespace
}  // namespace otter
