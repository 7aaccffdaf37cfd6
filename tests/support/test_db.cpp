#include "support/test_db.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <pqxx/pqxx>
#include <random>
#include <stdexcept>

// libpqxx 6.4 leaks the PGresult of a query during which the connection breaks (make_result()
// asks the dead connection for its encoding, which throws before the result is owned; fixed
// in libpqxx 7). Tests that cut connections on purpose would fail LeakSanitizer for it. The
// stacks stop inside libpq (built without frame pointers), so the match is on the allocator
// of PGresults: nothing in otter calls libpq directly, every result it sees is libpqxx's.
// Paho C 1.3.12 now and then keeps one internal buffer (~120 KiB, allocated inside
// libpaho-mqtt3as) past exit when a client is destroyed right after a disconnect; seen once in
// CI in a test process, never in otter's own allocations.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:PQmakeEmptyPGresult\nleak:libpaho-mqtt3as.so\n";
}

namespace otter::test {
namespace {

std::atomic<unsigned> g_counter{0};

// Where the URI's authority ends and its path begins ("postgresql://u@h:5432/db?x=1").
struct uri_parts {
  std::size_t authority_begin;  // after "://"
  std::size_t path_begin;       // '/', '?' or end
  std::size_t query_begin;      // '?' or end
};

std::optional<uri_parts> split_uri(const std::string& url) {
  const auto scheme = url.find("://");
  if (scheme == std::string::npos) return std::nullopt;
  uri_parts p{};
  p.authority_begin = scheme + 3;
  p.query_begin = url.find('?', p.authority_begin);
  if (p.query_begin == std::string::npos) p.query_begin = url.size();
  p.path_begin = url.find('/', p.authority_begin);
  if (p.path_begin == std::string::npos || p.path_begin > p.query_begin)
    p.path_begin = p.query_begin;
  return p;
}

}  // namespace

std::string admin_db_url() {
  const char* url = std::getenv("OTTER_TEST_DB_URL");
  if (url == nullptr || *url == '\0')
    throw std::runtime_error(
        "OTTER_TEST_DB_URL is not set: run `bash scripts/stack.sh start` and "
        "`eval \"$(bash scripts/stack.sh env)\"`");
  return url;
}

std::string url_with_database(const std::string& url, const std::string& dbname) {
  const auto p = split_uri(url);
  if (!p) return url + (url.empty() ? "" : " ") + "dbname=" + dbname;
  return url.substr(0, p->path_begin) + "/" + dbname + url.substr(p->query_begin);
}

std::string url_with_host_port(const std::string& url, const std::string& host, int port) {
  const auto p = split_uri(url);
  const auto hostport = host + ":" + std::to_string(port);
  if (!p) return url + " host=" + host + " port=" + std::to_string(port);
  auto userinfo_end = url.rfind('@', p->path_begin);
  const auto host_begin = (userinfo_end == std::string::npos || userinfo_end < p->authority_begin)
                              ? p->authority_begin
                              : userinfo_end + 1;
  return url.substr(0, host_begin) + hostport + url.substr(p->path_begin);
}

scratch_db::scratch_db() : scratch_db(admin_db_url(), "otter_t") {}

scratch_db::scratch_db(std::string admin_url, const std::string& prefix)
    : admin_url_(std::move(admin_url)) {
  std::random_device rd;
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%06x", rd() & 0xffffffU);
  name_ =
      prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(g_counter++) + "_" + suffix;
  url_ = url_with_database(admin_url_, name_);
  try {
    pqxx::connection admin{admin_url_};
    pqxx::nontransaction tx{admin};  // CREATE DATABASE cannot run inside a transaction
    tx.exec0("CREATE DATABASE " + tx.quote_name(name_));
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot create scratch database " + name_ + ": " +
                             std::string(e.what()) +
                             " (is the stack running? bash scripts/stack.sh start)");
  }
}

scratch_db::~scratch_db() {
  try {
    pqxx::connection admin{admin_url_};
    pqxx::nontransaction tx{admin};
    tx.exec0("DROP DATABASE IF EXISTS " + tx.quote_name(name_) + " WITH (FORCE)");
  } catch (const std::exception& e) {
    std::cerr << "scratch_db: could not drop " << name_ << ": " << e.what() << "\n";
  }
}

}  // namespace otter::test
