#pragma once
// A throw-away database for the bench's otterd on the stack's PostgreSQL (OTTER_TEST_DB_URL,
// the admin URL scripts/stack.sh exports), dropped again when the object goes.
#include <string>

namespace otter::bench {

class scratch_db {
 public:
  // Creates otter_bench_<pid>_<random>; throws std::runtime_error when the server is not
  // reachable.
  explicit scratch_db(std::string admin_url);
  ~scratch_db();  // DROP DATABASE ... WITH (FORCE)
  scratch_db(const scratch_db&) = delete;
  scratch_db& operator=(const scratch_db&) = delete;

  const std::string& url() const { return url_; }
  const std::string& name() const { return name_; }

 private:
  std::string admin_url_;
  std::string name_;
  std::string url_;
};

// The URL with its database replaced (a URI's path; a key=value string gets dbname= appended).
std::string url_with_database(const std::string& url, const std::string& dbname);

}  // namespace otter::bench
