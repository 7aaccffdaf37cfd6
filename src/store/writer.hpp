#pragma once
// The batched writer: the hot path never waits on PostgreSQL. Records queue up (bounded) and a
// background thread writes them in one transaction per batch; while PostgreSQL is away they
// wait in the queue and the writer reconnects with backoff.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "store/records.hpp"

namespace otter::store {

struct writer_stats {
  std::size_t queued = 0;     // records waiting now
  std::uint64_t written = 0;  // records written since start
  std::uint64_t batches = 0;
  std::uint64_t rejected = 0;  // submits refused because the queue was full
  std::uint64_t dropped = 0;   // rows PostgreSQL refused individually (logged; should stay 0)
  bool connected = false;
};

class writer {
 public:
  // on_recorded runs on the writer thread after each commit with the events just written
  // (ids set), e.g. to publish them on R/events/<kind>.
  using recorded_handler = std::function<void(const std::vector<event_record>&)>;

  writer(std::string db_url, std::size_t queue_limit, recorded_handler on_recorded = {});
  ~writer();  // stop(): drains what it can

  void start();
  // All of the set or nothing: false when it would exceed queue_limit (caller answers
  // "unavailable"). Never blocks on the database.
  bool submit(record_set&& set);
  // Stops accepting, writes everything queued (retrying while PostgreSQL is away until the
  // deadline), joins the thread. Returns the number of records left unwritten.
  std::size_t stop(std::chrono::milliseconds deadline = std::chrono::seconds(30));
  // Blocks until everything submitted before the call is committed (tests, orderly commands).
  bool flush(std::chrono::milliseconds timeout);

  writer_stats stats() const;
  std::size_t queue_limit() const noexcept { return limit_; }

 private:
  void run();
  // Marks the first `sets` of batch done (committed, or refused when `refused`), reports their
  // events to on_recorded, updates the counters and wakes flush(); erases them from batch.
  void complete(std::vector<record_set>& batch, std::size_t sets, bool refused);
  // Sleeps up to d (a backoff); false when it is time to give up: stop()'s deadline passed,
  // or stopping with nothing to write (holding: the thread still has a batch in hand).
  bool pause(std::chrono::milliseconds d, bool holding);
  bool past_deadline_locked() const;
  void set_connected(bool up);

  std::string db_url_;
  std::size_t limit_;
  recorded_handler on_recorded_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable flushed_cv_;
  std::deque<record_set> queue_;
  std::size_t queued_records_ = 0;
  std::uint64_t submitted_seq_ = 0;
  std::uint64_t committed_seq_ = 0;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point stop_deadline_{};
  writer_stats stats_;
  std::thread thread_;
};

}  // namespace otter::store
