#pragma once
// A scratch PostgreSQL database per test (or bench run), on the server named by
// OTTER_TEST_DB_URL (the admin URL that scripts/stack.sh prints), dropped again when the object
// goes. Needs no gtest: part of otter_testkit, which the bench links too.
#include <string>

namespace otter::test {

// OTTER_TEST_DB_URL; throws std::runtime_error saying how to start the stack when it is unset.
std::string admin_db_url();

// The same URL naming another database: the URI's path is replaced (key=value strings get a
// dbname= appended, which libpq lets override an earlier one).
std::string url_with_database(const std::string& url, const std::string& dbname);

// The same URL reaching the server at host:port instead (for a proxy in front of it).
std::string url_with_host_port(const std::string& url, const std::string& host, int port);

class scratch_db {
 public:
  // Creates otter_t_<pid>_<counter>_<random> on admin_db_url(). Throws (failing the test) when
  // the server is not configured or not reachable.
  scratch_db();
  // The same on the server of `admin_url`, named <prefix>_<pid>_<counter>_<random>.
  scratch_db(std::string admin_url, const std::string& prefix);
  ~scratch_db();  // DROP DATABASE ... WITH (FORCE): open connections do not keep it alive
  scratch_db(const scratch_db&) = delete;
  scratch_db& operator=(const scratch_db&) = delete;

  const std::string& name() const { return name_; }
  const std::string& url() const { return url_; }
  const std::string& admin_url() const { return admin_url_; }

 private:
  std::string admin_url_;
  std::string name_;
  std::string url_;
};

}  // namespace otter::test
