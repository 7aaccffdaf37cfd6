#pragma once
// Image download over MQTT (PROTOCOL.md "chunk request"). Requests are checked on the MQTT
// callback thread; the bytes are read with pread and published by worker threads, within
// caps on the bytes in flight per device and in total, so a thousand devices downloading at
// once cannot make the service's memory grow without bound.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "protocol/error.hpp"
#include "protocol/messages.hpp"
#include "protocol/topics.hpp"
#include "service/clock.hpp"
#include "service/image_store.hpp"
#include "service/metrics.hpp"
#include "service/ports.hpp"

namespace otter::service {

struct chunk_settings {
  std::uint32_t max = 4096;                   // chunk.max of every manifest
  std::uint32_t window = 16;                  // chunk.window of every manifest
  std::chrono::seconds offer_validity{3600};  // a device may fetch a file this long after its offer
  // Bytes requested and not yet handed to the MQTT client, for one device and for all; past
  // them a request gets rate_limited. The client itself holds at most total_inflight_cap
  // queued (the outbox's room): workers wait for room before each chunk, so a slow broker
  // holds requests back here, where they cost no memory, and the caps then refuse more.
  std::uint64_t device_inflight_cap = 1024 * 1024;
  std::uint64_t total_inflight_cap = 64ull * 1024 * 1024;
  // How long a worker waits for room before it gives a request up (unavailable).
  std::chrono::milliseconds room_wait{10000};
  int workers = 2;
  // With shared subscriptions a chunk request may reach an instance that did not make the
  // offer; the offer's grant arrives from the other instance (NOTIFY otter_grants) a few
  // milliseconds later. Above zero, a request without a grant waits this long for one before
  // it is refused.
  std::chrono::milliseconds grant_wait{0};
  std::size_t max_waiting = 10000;  // requests waiting for a grant; beyond: refused at once
  // One device's share of them (a device asks for a window at a time): past it, rate_limited,
  // so that one device cannot fill the list the others need.
  std::size_t max_waiting_per_device = 32;
};

class chunk_server {
 public:
  chunk_server(const protocol::topics& topics, image_store& images, outbox& out, recorder& records,
               const clock& time, metrics& counters, chunk_settings settings, std::string instance);
  ~chunk_server();
  void start();
  void stop();

  // An offer for this image was made to the device (now, or at `offered` when a restarted
  // service restores its grants): it may fetch the file until the offer is too old.
  void authorize(const std::string& device, const std::string& sha256, std::uint64_t size,
                 std::int64_t rollout, std::optional<clock::time_point> offered = std::nullopt);
  // Checks the request against the protocol's rules and the device's grants, then queues it.
  // Errors: bad_request (len/count above the manifest's), forbidden (file not offered to this
  // device, or the offer expired), range (offset at or past the end), rate_limited (caps).
  result<void> request(const std::string& device, const protocol::chunk_request_msg& m);

  std::uint64_t inflight_bytes() const;

  // How a request that waited for a grant in vain (or failed once it came) is refused: the
  // same answer and record as an immediate refusal. Set before start().
  using refusal_handler = std::function<void(const std::string& device,
                                             const std::optional<std::string>& req, const error&)>;
  void on_late_refusal(refusal_handler handler);

 private:
  struct grant {
    std::string sha256;
    std::uint64_t size = 0;
    std::int64_t rollout = 0;
    clock::time_point offered;
    int quarter_recorded = -1;  // 0..4: start, 25 %, 50 %, 75 %, end
  };
  struct job {
    std::string device;
    std::string file;
    std::string sha256;
    std::uint64_t size = 0;
    std::uint64_t offset = 0;
    std::uint32_t len = 0;
    std::uint32_t count = 0;
    std::uint64_t bytes = 0;  // what this job adds to the in-flight counters
    std::int64_t rollout = 0;
    std::optional<std::string> req;  // echoed should serving fail
  };
  struct refusal {
    std::string device;
    std::optional<std::string> req;
    error err;
  };
  void authorize_locked(const std::string& device, const std::string& sha256, std::uint64_t size,
                        std::int64_t rollout, std::optional<clock::time_point> offered,
                        std::vector<refusal>& late);
  struct waiting {
    std::string device;
    protocol::chunk_request_msg msg;
    std::chrono::steady_clock::time_point until;
  };
  void run();
  void expire_waiting();
  // Retries the waiting requests `due` selects: queued, or refused into `late`; one that still
  // finds no grant stays waiting when keep_missing, else it is refused too.
  void retry_waiting_locked(const std::function<bool(const waiting&)>& due, bool keep_missing,
                            std::vector<refusal>& late);
  void refuse_late(const std::vector<refusal>& late);  // without the lock
  // The request against the device's grant; `missing` tells a missing or expired grant apart.
  result<void> queue_locked(const std::string& device, const protocol::chunk_request_msg& m,
                            const std::string& file, bool& missing);
  void serve(const job& j);
  bool stopping() const;
  // The image's descriptor, opened once; -1 when the file is missing or shorter than `size`
  // (damaged: not cached, so a repaired file is opened again).
  int open_image(const std::string& sha256, std::uint64_t size);
  // A read came up short: later requests open the file again. The descriptor stays open until
  // the server goes (another worker may be reading through it).
  void retire_image(const std::string& sha256);
  void record_progress(const job& j, std::uint64_t end);

  const protocol::topics& topics_;
  image_store& images_;
  outbox& out_;
  recorder& records_;
  const clock& time_;
  metrics& counters_;
  chunk_settings s_;
  std::string instance_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<std::string, std::map<std::string, grant>> grants_;  // device -> file -> grant
  std::unordered_map<std::string, std::uint64_t> device_inflight_;
  std::uint64_t total_inflight_ = 0;
  std::deque<job> queue_;
  std::vector<waiting> waiting_;
  std::unordered_map<std::string, std::size_t> waiting_per_device_;
  refusal_handler refuse_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
  std::thread reaper_;  // refuses waiting requests whose time is up (grant_wait > 0 only)
  std::condition_variable reaper_cv_;  // only stop() wakes it early

  std::mutex fd_mu_;
  std::unordered_map<std::string, int> fds_;  // sha256 -> open image
  std::vector<int> retired_fds_;
};

}  // namespace otter::service
