#include "scratch_db.hpp"

#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <pqxx/pqxx>
#include <random>
#include <stdexcept>

// libpqxx 6.4 and Paho C keep a little memory past exit (see tests/support/test_db.cpp); the
// bench is built with the sanitizers in CI, so the same suppressions apply if it is ever run so.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:PQmakeEmptyPGresult\nleak:libpaho-mqtt3as.so\n";
}

namespace otter::bench {

std::string url_with_database(const std::string& url, const std::string& dbname) {
  const auto scheme = url.find("://");
  if (scheme == std::string::npos) return url + (url.empty() ? "" : " ") + "dbname=" + dbname;
  const auto authority = scheme + 3;
  auto query = url.find('?', authority);
  if (query == std::string::npos) query = url.size();
  auto path = url.find('/', authority);
  if (path == std::string::npos || path > query) path = query;
  return url.substr(0, path) + "/" + dbname + url.substr(query);
}

scratch_db::scratch_db(std::string admin_url) : admin_url_(std::move(admin_url)) {
  std::random_device rd;
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%06x", rd() & 0xffffffU);
  name_ = "otter_bench_" + std::to_string(::getpid()) + "_" + suffix;
  url_ = url_with_database(admin_url_, name_);
  try {
    pqxx::connection admin{admin_url_};
    pqxx::nontransaction tx{admin};  // CREATE DATABASE cannot run inside a transaction
    tx.exec0("CREATE DATABASE " + tx.quote_name(name_));
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot create a scratch database on the stack's PostgreSQL: " +
                             std::string(e.what()));
  }
}

scratch_db::~scratch_db() {
  try {
    pqxx::connection admin{admin_url_};
    pqxx::nontransaction tx{admin};
    tx.exec0("DROP DATABASE IF EXISTS " + tx.quote_name(name_) + " WITH (FORCE)");
  } catch (const std::exception& e) {
    std::cerr << "otter-bench: could not drop database " << name_ << ": " << e.what() << "\n";
  }
}

}  // namespace otter::bench
