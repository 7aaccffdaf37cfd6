#pragma once
// Schema migrations: sql/NNN_name.sql compiled into the binary, applied in order at start-up.
#include <string>
#include <vector>

namespace pqxx {
// libpqxx 6.x: connection is an alias of a template, so a plain `class connection;` would clash
// with <pqxx/connection>; declare it the way libpqxx does.
class connect_direct;
template <typename CONNECTPOLICY>
class basic_connection_base;
using connection = basic_connection_base<connect_direct>;
}  // namespace pqxx

namespace otter::store {

struct migration {
  std::string name;  // file name without extension, e.g. "001_init"
  std::string sql;
};

// Generated at build time from sql/*.sql (cmake/embed_migrations.cmake), sorted by name.
const std::vector<migration>& embedded_migrations();

// Applies the pending migrations in one transaction holding a transaction-level advisory lock,
// so two instances starting together cannot both apply them; records each in otter_migrations.
// Returns the names applied now (empty when the schema was current). Throws on failure.
std::vector<std::string> migrate(pqxx::connection& conn,
                                 const std::vector<migration>& all = embedded_migrations());

}  // namespace otter::store
