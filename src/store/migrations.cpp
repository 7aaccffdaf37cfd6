#include "store/migrations.hpp"

#include <spdlog/spdlog.h>

#include <pqxx/pqxx>
#include <set>

namespace otter::store {
namespace {

// "otter" in ASCII and a 1: every otterd instance of every version uses this one key.
constexpr std::int64_t kMigrationLockKey = 0x6F74746572000001;

constexpr const char* kLock = "SELECT pg_advisory_xact_lock($1::bigint)";
constexpr const char* kCreateTable =
    "CREATE TABLE IF NOT EXISTS otter_migrations ("
    " name text PRIMARY KEY,"
    " applied_at timestamptz NOT NULL DEFAULT now())";
constexpr const char* kApplied = "SELECT name FROM otter_migrations";
constexpr const char* kRecord = "INSERT INTO otter_migrations (name) VALUES ($1)";
// The notice "relation otter_migrations already exists, skipping" is noise on every start.
constexpr const char* kQuiet = "SET LOCAL client_min_messages = warning";

}  // namespace

std::vector<std::string> migrate(pqxx::connection& conn, const std::vector<migration>& all) {
  std::vector<std::string> applied_now;
  pqxx::work tx{conn, "otter_migrate"};
  tx.exec0(kQuiet);
  // Taken before anything else: a second instance waits here until the first commits, and
  // then sees its otter_migrations rows.
  tx.exec_params(kLock, kMigrationLockKey);
  tx.exec0(kCreateTable);

  std::set<std::string> done;
  for (const auto& row : tx.exec(kApplied)) done.insert(row[0].as<std::string>());

  for (const auto& m : all) {
    if (done.count(m.name)) continue;
    spdlog::info("store: applying migration {}", m.name);
    tx.exec0(m.sql);  // simple query protocol: a file may hold many statements
    tx.exec_params0(kRecord, m.name);
    applied_now.push_back(m.name);
  }
  tx.commit();
  return applied_now;
}

}  // namespace otter::store
