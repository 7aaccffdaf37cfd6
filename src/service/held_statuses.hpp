#pragma once
// With shared device topics a status report without "rollout" may reach this instance before
// the note of the offer it belongs to (another instance made the offer; its note travels when
// that instance's batch commits). Such a report waits here, briefly, for the offer, and the
// device's later reports wait behind it so that they are recorded in the order sent.
#include <chrono>
#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "protocol/messages.hpp"
#include "service/clock.hpp"

namespace otter::service {

class held_statuses {
 public:
  struct held {
    protocol::status_msg msg;
    clock::time_point at;                         // when it arrived (what is recorded)
    std::chrono::steady_clock::time_point until;  // when it stops waiting
  };

  held_statuses(std::chrono::milliseconds wait, std::size_t max_devices,
                std::size_t max_per_device);

  // Whether the device has reports waiting (a later one must then wait behind them).
  bool holding(const std::string& device) const;
  // Queues the report behind the device's others; false when the device or the list is full
  // (the caller then releases what waits and records this one at once).
  bool hold(const std::string& device, protocol::status_msg msg, clock::time_point at,
            std::chrono::steady_clock::time_point now);
  // Everything the device has waiting, oldest first, removed.
  std::vector<held> take(const std::string& device);
  // Whether the caller should post a release for the device: it has reports waiting and no
  // release is posted yet (take() clears the mark). Keeps the worker queues free of repeats.
  bool claim_release(const std::string& device);
  // The devices whose oldest report has waited long enough and whose release is not posted
  // yet; they are marked as posted.
  std::vector<std::string> claim_due(std::chrono::steady_clock::time_point now);
  std::vector<std::string> devices() const;
  std::size_t size() const;

 private:
  std::chrono::milliseconds wait_;
  std::size_t max_devices_;
  std::size_t max_per_device_;
  mutable std::mutex mu_;
  struct device_reports {
    std::deque<held> reports;
    bool release_posted = false;
  };
  std::unordered_map<std::string, device_reports> held_;
  std::size_t count_ = 0;
};

}  // namespace otter::service
