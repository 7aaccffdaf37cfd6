#pragma once
// HTTP download load: n clients (threads with cpp-httplib's client, keep-alive) fetch the same
// URL over and over for a fixed time; bytes are counted as they arrive, so a download cut by
// the end of the run counts for what it delivered.
#include <cstdint>
#include <string>

namespace otter::bench {

struct http_job {
  std::string host = "127.0.0.1";
  int port = 0;
  std::string target;  // path and query
  int clients = 1;
  double seconds = 4;
  std::uint64_t expected_size = 0;  // a 200 of another length is an error
};

struct http_point {
  int clients = 0;
  std::uint64_t bytes = 0;
  double seconds = 0;
  double mb_s = 0;             // 10^6 bytes per second
  std::int64_t downloads = 0;  // completed
  std::int64_t errors = 0;
  std::string first_error;
  double server_cpu_s = 0;  // CPU the server (otterd, or nginx's master and workers) used
};

// One GET of job.target, to fail early with a clear message (and to warm the page cache).
std::string http_probe(const http_job& job);

http_point run_http(const http_job& job);

// "http://host:port/path?q" -> host, port, target; false if it is not such a URL.
bool split_http_url(const std::string& url, std::string& host, int& port, std::string& target);

}  // namespace otter::bench
