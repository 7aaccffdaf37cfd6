// The Grafana dashboard of compose/grafana against the real schema: every panel's SQL runs, as
// the read-only role of dashboard-role.sql, on a migrated scratch database with known rows, and
// the panels that count things count them right. Grafana itself is not installable here, so
// its macros are expanded the way Grafana expands them for PostgreSQL.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <regex>
#include <set>
#include <string>

#include "store/migrations.hpp"
#include "support/files.hpp"
#include "support/test_db.hpp"

namespace otter {
namespace {

using json = nlohmann::json;

const std::filesystem::path kGrafana = std::filesystem::path(OTTER_SOURCE_DIR) / "compose/grafana";

// $__timeFilter(col) and $__timeGroupAlias(col, '1m') over a 6-hour range ending now.
std::string expand_macros(std::string sql) {
  sql = std::regex_replace(sql, std::regex(R"(\$__timeFilter\((\w+)\))"),
                           "$1 BETWEEN now() - interval '6 hours' AND now()");
  sql = std::regex_replace(sql, std::regex(R"(\$__timeGroupAlias\((\w+), '1m'\))"),
                           "to_timestamp(floor(extract(epoch FROM $1) / 60) * 60) AS \"time\"");
  return sql;
}

class dashboards_test : public ::testing::Test {
 protected:
  void SetUp() override {
    pqxx::connection c{db_.url()};
    store::migrate(c);
    pqxx::work tx{c};
    tx.exec(R"sql(
      INSERT INTO devices (id, model, version, first_seen, last_seen) VALUES
        ('d1', 'esp32', '1.0.0', now(), now()),
        ('d2', 'esp32', '1.1.0', now(), now()),
        ('d3', 'esp32', '1.1.0', now(), now() - interval '3 days'),
        ('d4', 'esp8266', '2.0.0', now(), now());
      INSERT INTO uploads (sha256, size, uploaded_by)
        VALUES (repeat('a', 64), 10, 'admin1');
      INSERT INTO releases (model, version, version_key, sha256, size, created_by)
        VALUES ('esp32', '1.1.0', '1.1.0', repeat('a', 64), 10, 'admin1');
      INSERT INTO rollouts (name, release_id, target, created_by)
        SELECT 'canary', id, '{"type": "percent", "percent": 50}', 'admin1' FROM releases;
      INSERT INTO rollout_devices (rollout, device, state, offered_at, updated_at)
        SELECT r.id, d.device, d.state, now(), now() FROM rollouts r,
          (VALUES ('d1', 'downloading'), ('d2', 'success'), ('d3', 'rolled_back'),
                  ('d5', 'offered')) AS d (device, state);
      INSERT INTO status_reports (device, rollout, version, state, error, at)
        SELECT 'd3', id, '1.1.0', 'rolled_back', 'did not confirm', now() - interval '1 minute'
        FROM rollouts;
      INSERT INTO status_reports (device, rollout, version, state, at)
        SELECT 'd2', id, '1.1.0', 'success', now() - interval '2 minutes' FROM rollouts;
      INSERT INTO events (at, kind, device)
        SELECT now() - i * interval '10 seconds', 'check', 'd1' FROM generate_series(1, 5) i;
      INSERT INTO events (at, kind, device) VALUES (now() - interval '2 days', 'check', 'd1');
    )sql");
    tx.commit();

    // The role of dashboard-role.sql under a name of this test's own (roles are per server).
    role_ = "otter_dash_" + db_.name().substr(db_.name().rfind('_') + 1);
    std::string script = test::read_file(kGrafana / "dashboard-role.sql");
    script = std::regex_replace(script, std::regex("otter_dashboard"), role_);
    script = std::regex_replace(script, std::regex(":password"), "'not-a-secret'");
    pqxx::nontransaction setup{c};
    setup.exec(script);
    setup.exec("GRANT " + role_ + " TO CURRENT_USER");
  }

  void TearDown() override {
    try {
      pqxx::connection c{db_.url()};
      pqxx::nontransaction tx{c};
      tx.exec("DROP OWNED BY " + role_);
      tx.exec("DROP ROLE " + role_);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "could not drop role " << role_ << ": " << e.what();
    }
  }

  // Runs sql with the dashboard role's privileges.
  pqxx::result as_dashboard(const std::string& sql) {
    pqxx::connection c{db_.url()};
    pqxx::work tx{c};
    tx.exec("SET LOCAL ROLE " + role_);
    return tx.exec(sql);
  }

  static json dashboard() {
    return json::parse(test::read_file(kGrafana / "dashboards/otter-fleet.json"));
  }

  // Panel title -> its one query, macros expanded.
  static std::map<std::string, std::string> queries() {
    std::map<std::string, std::string> out;
    const auto d = dashboard();  // not in the for-range: the temporary would die before the loop
    for (const auto& p : d.at("panels"))
      out[p.at("title").get<std::string>()] =
          expand_macros(p.at("targets").at(0).at("rawSql").get<std::string>());
    return out;
  }

  test::scratch_db db_;
  std::string role_;
};

TEST_F(dashboards_test, every_panel_has_one_sql_query_on_the_provisioned_datasource) {
  const auto provisioned = test::read_file(kGrafana / "provisioning/datasources/otter.yml");
  ASSERT_NE(provisioned.find("uid: otter-pg"), std::string::npos);
  std::set<int> ids;
  const auto d = dashboard();
  ASSERT_FALSE(d.at("panels").empty());
  for (const auto& p : d.at("panels")) {
    SCOPED_TRACE(p.at("title").get<std::string>());
    EXPECT_TRUE(ids.insert(p.at("id").get<int>()).second) << "duplicate panel id";
    EXPECT_EQ(p.at("datasource").at("uid"), "otter-pg");
    ASSERT_EQ(p.at("targets").size(), 1u);
    const auto& t = p.at("targets").at(0);
    EXPECT_EQ(t.at("datasource").at("uid"), "otter-pg");
    EXPECT_TRUE(t.at("rawQuery").get<bool>());
    const auto sql = expand_macros(t.at("rawSql").get<std::string>());
    EXPECT_EQ(sql.find("$__"), std::string::npos) << "a macro this test does not expand";
  }
}

TEST_F(dashboards_test, every_query_runs_with_the_read_only_role) {
  const auto q = queries();
  ASSERT_EQ(q.size(), dashboard().at("panels").size()) << "panel titles must be unique";
  for (const auto& [title, sql] : q) {
    SCOPED_TRACE(title);
    EXPECT_NO_THROW(as_dashboard(sql)) << sql;
  }
}

TEST_F(dashboards_test, the_role_cannot_write) {
  EXPECT_THROW(as_dashboard("DELETE FROM events"), pqxx::insufficient_privilege);
  EXPECT_THROW(as_dashboard("UPDATE rollouts SET state = 'cancelled'"),
               pqxx::insufficient_privilege);
}

TEST_F(dashboards_test, panels_count_what_the_tables_hold) {
  auto q = queries();
  EXPECT_EQ(as_dashboard(q.at("Devices"))[0][0].as<int>(), 4);
  EXPECT_EQ(as_dashboard(q.at("Not seen for 24 h"))[0][0].as<int>(), 1);
  EXPECT_EQ(as_dashboard(q.at("Failed or rolled back (24 h)"))[0][0].as<int>(), 1);

  std::map<std::string, int> versions;
  for (const auto& row : as_dashboard(q.at("Versions in the fleet")))
    versions[row["model"].as<std::string>() + " " + row["version"].as<std::string>()] =
        row["devices"].as<int>();
  EXPECT_EQ(versions, (std::map<std::string, int>{
                          {"esp32 1.0.0", 1}, {"esp32 1.1.0", 2}, {"esp8266 2.0.0", 1}}));

  const auto rollouts = as_dashboard(q.at("Rollouts"));
  ASSERT_EQ(rollouts.size(), 1u);
  const auto r = rollouts[0];
  EXPECT_EQ(r["target"].as<std::string>(), "percent");
  EXPECT_EQ(r["offered"].as<int>(), 4);
  EXPECT_EQ(r["in_progress"].as<int>(), 1);
  EXPECT_EQ(r["success"].as<int>(), 1);
  EXPECT_EQ(r["failed"].as<int>(), 1);
  EXPECT_EQ(r["failure_pct"].as<double>(), 25.0);

  int checks = 0;  // the one two days old is outside the 6-hour range
  for (const auto& row : as_dashboard(q.at("Checks per minute"))) checks += row["checks"].as<int>();
  EXPECT_EQ(checks, 5);

  const auto failures = as_dashboard(q.at("Recent failures"));
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0]["device"].as<std::string>(), "d3");
  EXPECT_EQ(failures[0]["error"].as<std::string>(), "did not confirm");
}

}  // namespace
}  // namespace otter
