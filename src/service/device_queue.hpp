#pragma once
// Device messages are handled off the MQTT callback thread, by a few workers: Paho delivers
// every message of the process on one thread, and signing an offer there made that thread the
// service's bottleneck (bench/, README "Performance"). A device's messages always go to the
// same worker, so they are handled in the order they arrived.
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "protocol/topics.hpp"

namespace otter::service {

class device_queue {
 public:
  using handler = std::function<void(const protocol::parsed_topic&, std::string_view payload)>;

  // `limit`: messages waiting per worker; past it submit() waits (the broker then holds
  // further messages, which is the back-pressure MQTT provides). `per_device`: messages one
  // device may have waiting; past it submit() refuses at once, so that one device sending in
  // a loop cannot fill a worker's queue and make everyone wait.
  device_queue(std::size_t workers, std::size_t limit, handler h, std::size_t per_device = 32);
  ~device_queue();  // stop()
  device_queue(const device_queue&) = delete;
  device_queue& operator=(const device_queue&) = delete;

  void start();
  enum class admit { queued, device_busy, stopping };
  // Queues a copy of the message for its device's worker. Status reports have a cap
  // kStatusCapFactor times larger (PROTOCOL.md answers them only on error, so a device cannot
  // pace them by answers; a device updating sends a handful), which still keeps one device
  // from filling a worker's queue and so blocking every device's messages.
  static constexpr std::size_t kStatusCapFactor = 8;
  admit submit(const protocol::parsed_topic& topic, std::string_view payload);
  // Runs `task` on the device's worker, in order with its messages (work that must not race
  // them, e.g. reports held for an offer another instance made). False once stopping.
  bool post(const std::string& device, std::function<void()> task);
  // Handles what is queued, then joins the workers. Idempotent.
  void stop();

 private:
  struct item {
    protocol::parsed_topic topic;
    std::string payload;
    std::function<void()> task;  // set: run it instead of the handler (topic.subject: device)
  };
  struct worker {
    std::mutex mu;
    std::condition_variable has_work;
    std::condition_variable has_room;
    std::deque<item> queue;
    std::unordered_map<std::string, std::size_t> waiting;  // per device: queued or being handled
    bool stopping = false;
    std::thread thread;
  };
  void run(worker& w);
  worker& worker_of(const std::string& device);

  std::size_t limit_;
  std::size_t per_device_;
  handler handle_;
  std::vector<std::unique_ptr<worker>> workers_;
};

}  // namespace otter::service
