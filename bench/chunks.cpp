#include "chunks.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace otter::bench {
namespace {

using clk = std::chrono::steady_clock;

struct device_state {
  std::uint64_t offset = 0;  // of the window asked for
  std::uint32_t count = 0;   // chunks in that window
  std::uint32_t got = 0;     // of them arrived
  std::uint64_t chunks_left = 0;
  std::uint64_t seq = 0;
};

}  // namespace

chunk_point run_chunks(device_pool& pool, const protocol::topics& topics, const chunk_job& job) {
  const int n = std::min(job.devices, pool.size());
  const std::uint64_t per_device =
      std::max<std::uint64_t>(1, job.total_bytes / static_cast<std::uint64_t>(n) / job.chunk_len);
  std::vector<std::string> req_topics;
  for (int i = 0; i < n; ++i) req_topics.push_back(topics.device_chunk_request(pool.id(i)));

  std::mutex mu;
  std::vector<device_state> dev(static_cast<std::size_t>(n));
  std::deque<int> to_send;  // devices whose next request the main thread sends
  std::uint64_t bytes = 0;
  std::int64_t refused = 0;
  std::int64_t requests = 0;
  int done = 0;
  clk::time_point last_progress = clk::now();
  clk::time_point finished;
  std::string problem;

  // The next window of device i, or none when it has its share. Under mu.
  auto next_window = [&](int i) {
    auto& d = dev[static_cast<std::size_t>(i)];
    if (d.count > 0) {
      d.offset += std::uint64_t(d.count) * job.chunk_len;
      if (d.offset >= job.image_size) d.offset = 0;
    }
    const std::uint64_t to_end = (job.image_size - d.offset + job.chunk_len - 1) / job.chunk_len;
    d.count =
        static_cast<std::uint32_t>(std::min<std::uint64_t>({job.window, d.chunks_left, to_end}));
    d.got = 0;
    return d.count > 0;
  };
  auto request_body = [&](int i) {
    const auto& d = dev[static_cast<std::size_t>(i)];
    return "{\"req\":\"k" + std::to_string(i) + "-" + std::to_string(d.seq) + "\",\"file\":\"" +
           job.file + "\",\"offset\":" + std::to_string(d.offset) +
           ",\"len\":" + std::to_string(job.chunk_len) + ",\"count\":" + std::to_string(d.count) +
           "}";
  };

  pool.set_handler([&](int i, std::string_view topic, std::string_view payload) {
    if (i >= n) return;
    std::string body;
    {
      std::lock_guard lock(mu);
      auto& d = dev[static_cast<std::size_t>(i)];
      const auto chunk_at = topic.find("/down/chunk/");
      if (chunk_at == std::string_view::npos) {
        if (topic.ends_with("/down/error")) {
          ++refused;
          if (payload.find("rate_limited") != std::string_view::npos) {
            to_send.push_back(i);  // asked too early: ask again shortly
          } else if (problem.empty()) {
            problem = "device " + pool.id(i) + " got an error: " + std::string(payload);
          }
        }
        return;
      }
      const auto slash = topic.rfind('/');
      std::uint64_t off = 0;
      std::from_chars(topic.data() + slash + 1, topic.data() + topic.size(), off);
      if (d.count == 0 || off < d.offset ||
          off >= d.offset + std::uint64_t(d.count) * job.chunk_len)
        return;  // not of the window asked for
      bytes += payload.size();
      ++d.got;
      --d.chunks_left;
      last_progress = clk::now();
      if (d.got < d.count) return;
      if (!next_window(i)) {
        if (++done == n) finished = clk::now();
        return;
      }
      ++d.seq;
      ++requests;
      body = request_body(i);
    }
    (void)pool.publish(i, req_topics[static_cast<std::size_t>(i)], body);
  });

  const auto start = clk::now();
  {
    std::lock_guard lock(mu);
    last_progress = start;
    for (int i = 0; i < n; ++i) {
      dev[static_cast<std::size_t>(i)].chunks_left = per_device;
      next_window(i);
      ++requests;
    }
  }
  for (int i = 0; i < n; ++i) {
    std::string body;
    {
      std::lock_guard lock(mu);
      body = request_body(i);
    }
    (void)pool.publish(i, req_topics[static_cast<std::size_t>(i)], body);
  }

  chunk_point p;
  p.devices = n;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::vector<std::pair<int, std::string>> retry;
    {
      std::lock_guard lock(mu);
      if (done == n) break;
      if (!problem.empty()) break;
      if (clk::now() - last_progress > std::chrono::seconds(15)) {
        problem = "no chunk for 15 s";
        break;
      }
      while (!to_send.empty()) {
        const int i = to_send.front();
        to_send.pop_front();
        ++dev[static_cast<std::size_t>(i)].seq;
        ++requests;
        retry.emplace_back(i, request_body(i));
      }
    }
    for (auto& [i, body] : retry)
      (void)pool.publish(i, req_topics[static_cast<std::size_t>(i)], body);
  }
  pool.set_handler(nullptr);
  std::lock_guard lock(mu);
  p.bytes = bytes;
  p.requests = requests;
  p.refused = refused;
  p.complete = done == n;
  p.problem = problem;
  const auto end = p.complete ? finished : last_progress;
  p.seconds = std::chrono::duration<double>(end - start).count();
  p.mb_s = p.seconds > 0 ? static_cast<double>(bytes) / p.seconds / 1e6 : 0;
  return p;
}

}  // namespace otter::bench
