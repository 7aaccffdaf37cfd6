#pragma once
// Counters of what the service did, for metrics.get and the retained metrics topic.
#include <atomic>
#include <cstdint>
#include <nlohmann/json.hpp>

namespace otter::service {

struct metrics {
  std::atomic<std::uint64_t> checks{0};
  std::atomic<std::uint64_t> offers{0};      // update: true
  std::atomic<std::uint64_t> up_to_date{0};  // update: false
  std::atomic<std::uint64_t> statuses{0};
  std::atomic<std::uint64_t> chunk_requests{0};
  std::atomic<std::uint64_t> device_errors{0};  // refused device messages
  std::atomic<std::uint64_t> commands{0};
  std::atomic<std::uint64_t> command_errors{0};
  std::atomic<std::uint64_t> uploads{0};
  std::atomic<std::uint64_t> unavailable{0};    // answers refused because records could not queue
  std::atomic<std::uint64_t> events_pruned{0};  // deleted by OTTER_EVENT_RETENTION

  nlohmann::json to_json() const {
    return {{"checks", checks.load()},
            {"offers", offers.load()},
            {"up_to_date", up_to_date.load()},
            {"statuses", statuses.load()},
            {"chunk_requests", chunk_requests.load()},
            {"device_errors", device_errors.load()},
            {"commands", commands.load()},
            {"command_errors", command_errors.load()},
            {"uploads", uploads.load()},
            {"unavailable", unavailable.load()},
            {"events_pruned", events_pruned.load()}};
  }
};

}  // namespace otter::service
