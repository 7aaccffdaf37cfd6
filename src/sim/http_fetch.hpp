#pragma once
// The simulator's HTTP downloads (--via http). Devices do no I/O: they ask for a fetch, a small
// pool of threads performs it and hands the result back to the device's worker. Bodies are
// hashed as they stream in and never held, so a fleet downloading at once needs no image-sized
// buffers.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "protocol/error.hpp"
#include "sim/device.hpp"

namespace otter::sim {

// "http://host:port/path?query" → origin "http://host:port", target "/path?query".
struct url_parts {
  std::string origin;
  std::string target;
};
result<url_parts> split_url(std::string_view url);

// One download: GET, streamed through SHA-256, reading at most size + 1 bytes.
fetch_result fetch_once(const fetch_request& request, std::chrono::seconds timeout);

class http_fetcher {
 public:
  // `done` runs on a pool thread with the device index given to submit().
  using done_fn = std::function<void(std::uint32_t index, fetch_result)>;
  http_fetcher(std::size_t threads, std::chrono::seconds timeout, done_fn done);
  ~http_fetcher();  // stop()
  http_fetcher(const http_fetcher&) = delete;
  http_fetcher& operator=(const http_fetcher&) = delete;

  void submit(std::uint32_t index, fetch_request request);
  // Drops what has not started and waits for the downloads in progress. Idempotent.
  void stop();

 private:
  struct job {
    std::uint32_t index;
    fetch_request request;
  };
  void run();

  std::chrono::seconds timeout_;
  done_fn done_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<job> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace otter::sim
