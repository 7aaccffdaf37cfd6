#pragma once
// Check -> offer round trips, open loop: checks leave at fixed times whatever the answers do,
// and each latency runs from the time the check was *meant* to leave, so a responder that falls
// behind is charged for the queue it builds (no coordinated omission).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "check_point.hpp"
#include "device_pool.hpp"
#include "protocol/error.hpp"
#include "protocol/topics.hpp"

namespace otter::bench {

class check_load {
 public:
  check_load(device_pool& pool, const protocol::topics& topics, std::string model,
             std::string version);
  ~check_load();

  // Every device checks once, all at once, and waits for its answer: connections, caches and
  // the service's device records are warm before anything is measured.
  result<void> warm_up(std::chrono::milliseconds timeout);
  // `rate` checks per second for `seconds`, spread round robin over the devices.
  check_point run(int rate, double seconds, double p99_bound_ms);

 private:
  struct run_state;
  void on_message(int device, std::string_view topic, std::string_view payload);
  std::string check_payload(std::uint32_t gen, std::int64_t index);
  std::shared_ptr<run_state> current();
  void set_current(std::shared_ptr<run_state> s);

  device_pool& pool_;
  std::string model_;
  std::string version_;
  std::vector<std::string> check_topics_;
  std::atomic<std::uint32_t> gen_{0};
  std::mutex mu_;
  std::shared_ptr<run_state> state_;  // the run answers belong to; null between runs
  std::uint64_t nonce_state_;
};

}  // namespace otter::bench
