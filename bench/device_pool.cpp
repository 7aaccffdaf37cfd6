#include "device_pool.hpp"

#include <cstdio>

namespace otter::bench {

device_pool::device_pool(const stack_env& env, const protocol::topics& topics, std::string prefix,
                         int count) {
  for (int i = 0; i < count; ++i) {
    char id[64];
    std::snprintf(id, sizeof id, "%s-%04d", prefix.c_str(), i);
    ids_.emplace_back(id);
    mqtt::client_options o;
    o.server_uri = env.mqtt_url;
    o.client_id = id;
    auto c = std::make_unique<mqtt::client>(o);
    c->on_message([this, i](const mqtt::message& m) { dispatch(i, m); });
    // Remembered now, made when the connection comes up.
    (void)c->subscribe(topics.device_down_filter(id), 1);
    clients_.push_back(std::move(c));
  }
}

device_pool::~device_pool() {
  set_handler(nullptr);
  for (auto& c : clients_) c->disconnect(std::chrono::milliseconds(500));
}

result<void> device_pool::connect(std::chrono::milliseconds timeout) {
  for (auto& c : clients_) c->start_connect();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (auto& c : clients_) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (auto r = c->wait_connected(std::max(left, std::chrono::milliseconds(1))); !r) return r;
  }
  return {};
}

void device_pool::set_handler(handler h) {
  auto p = h ? std::make_shared<const handler>(std::move(h)) : nullptr;
  std::unique_lock lock(mu_);
  handler_ = std::move(p);
  // The old handler may capture a phase's locals: it must have returned before they go.
  idle_.wait(lock, [&] { return running_ == 0; });
}

void device_pool::dispatch(int index, const mqtt::message& m) {
  std::shared_ptr<const handler> h;
  {
    std::lock_guard lock(mu_);
    h = handler_;
    if (!h) return;
    ++running_;
  }
  (*h)(index, m.topic, m.payload);
  std::lock_guard lock(mu_);
  if (--running_ == 0) idle_.notify_all();
}

result<void> device_pool::publish(int index, const std::string& topic, std::string_view payload) {
  return clients_[static_cast<std::size_t>(index)]->publish(topic, payload, 1, false);
}

}  // namespace otter::bench
