#pragma once
// Many devices on few threads. Every device has its own MQTT connection, but its state
// machine runs on one of a handful of workers (device i on worker i mod K): the MQTT handlers
// only queue what arrives, and each worker runs its devices' messages and timers (a heap of
// deadlines) in order, so a device is never touched by two threads.
#include <chrono>
#include <memory>
#include <string>

#include "protocol/error.hpp"
#include "protocol/semver.hpp"
#include "sim/device.hpp"
#include "sim/report.hpp"

namespace otter::sim {

struct fleet_config {
  std::string mqtt_url;
  std::string root = "ota/v1";
  std::string prefix = "sim";
  int devices = 1;
  protocol::semver version;
  device_settings settings;  // settings.pinned etc. must outlive the fleet
  int workers = 1;
};

class fleet {
 public:
  explicit fleet(fleet_config config);
  ~fleet();
  fleet(const fleet&) = delete;
  fleet& operator=(const fleet&) = delete;

  // Connects every device at once and waits for all of them. unavailable, with what to do,
  // if some are not connected within `timeout` (the rest are then disconnected).
  result<void> connect(std::chrono::milliseconds timeout);
  // Starts the workers: each device schedules its first check.
  void start();
  // Stops the workers and disconnects every device. Idempotent.
  void stop();

  // The numbers so far; durations only when asked (they grow with the run).
  fleet_stats stats(bool with_durations) const;

 private:
  struct worker;
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace otter::sim
