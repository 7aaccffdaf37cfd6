#include "service/device_queue.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace otter::service {

device_queue::device_queue(std::size_t workers, std::size_t limit, handler h,
                           std::size_t per_device)
    : limit_(std::max<std::size_t>(1, limit)),
      per_device_(std::max<std::size_t>(1, per_device)),
      handle_(std::move(h)) {
  for (std::size_t i = 0; i < std::max<std::size_t>(1, workers); ++i)
    workers_.push_back(std::make_unique<worker>());
}

device_queue::~device_queue() {
  stop();
}

void device_queue::start() {
  for (auto& w : workers_)
    if (!w->thread.joinable()) w->thread = std::thread([this, p = w.get()] { run(*p); });
}

device_queue::worker& device_queue::worker_of(const std::string& device) {
  return *workers_[std::hash<std::string>{}(device) % workers_.size()];
}

bool device_queue::post(const std::string& device, std::function<void()> task) {
  auto& w = worker_of(device);
  std::lock_guard lock(w.mu);
  if (w.stopping) return false;
  // Not counted against the device's cap, nor held back by the queue limit: the listener
  // thread posts, and must not wait on the workers.
  protocol::parsed_topic t{};
  t.subject = device;
  w.queue.push_back({std::move(t), {}, std::move(task)});
  if (w.queue.size() == 1) w.has_work.notify_one();
  return true;
}

device_queue::admit device_queue::submit(const protocol::parsed_topic& topic,
                                         std::string_view payload) {
  auto& w = worker_of(topic.subject);
  std::unique_lock lock(w.mu);
  const std::size_t cap = topic.kind == protocol::topic_kind::device_status
                              ? per_device_ * kStatusCapFactor
                              : per_device_;
  if (auto it = w.waiting.find(topic.subject); it != w.waiting.end() && it->second >= cap)
    return admit::device_busy;
  w.has_room.wait(lock, [&] { return w.stopping || w.queue.size() < limit_; });
  if (w.stopping) return admit::stopping;
  ++w.waiting[topic.subject];
  w.queue.push_back({topic, std::string(payload), {}});
  if (w.queue.size() == 1) w.has_work.notify_one();
  return admit::queued;
}

void device_queue::stop() {
  for (auto& w : workers_) {
    {
      std::lock_guard lock(w->mu);
      w->stopping = true;
    }
    w->has_work.notify_all();
    w->has_room.notify_all();
  }
  for (auto& w : workers_)
    if (w->thread.joinable()) w->thread.join();
}

void device_queue::run(worker& w) {
  std::deque<item> batch;
  for (;;) {
    {
      std::unique_lock lock(w.mu);
      w.has_work.wait(lock, [&] { return w.stopping || !w.queue.empty(); });
      if (w.queue.empty()) return;  // stopping, and everything queued is handled
      batch.swap(w.queue);
    }
    w.has_room.notify_all();
    for (const auto& m : batch) {
      try {
        if (m.task)
          m.task();
        else
          handle_(m.topic, m.payload);
      } catch (const std::exception& e) {
        // The edge: one bad message must never take the service down.
        spdlog::error("decision=message_failed device={} error=\"{}\"", m.topic.subject, e.what());
      }
      if (m.task) continue;  // posted tasks do not count towards the device's cap
      std::lock_guard lock(w.mu);
      if (auto it = w.waiting.find(m.topic.subject); it != w.waiting.end() && --it->second == 0)
        w.waiting.erase(it);
    }
    batch.clear();
  }
}

}  // namespace otter::service
