#pragma once
// The bench's devices: one MQTT connection each through the project's adapter, client id =
// device id (the stack's ACL wants that), subscribed to their own down/# topics. Every message
// goes to one handler with the device's index; phases swap the handler.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt/client.hpp"
#include "options.hpp"
#include "protocol/error.hpp"
#include "protocol/topics.hpp"

namespace otter::bench {

class device_pool {
 public:
  // index, topic, payload. Runs on the adapter's callback thread: keep it short.
  using handler = std::function<void(int, std::string_view, std::string_view)>;

  device_pool(const stack_env& env, const protocol::topics& topics, std::string prefix, int count);
  ~device_pool();
  device_pool(const device_pool&) = delete;
  device_pool& operator=(const device_pool&) = delete;

  // Connects every device at once (start_connect on all, then wait).
  result<void> connect(std::chrono::milliseconds timeout);
  // Replaces the handler and waits until the old one is no longer running (never call it from
  // a handler).
  void set_handler(handler h);
  result<void> publish(int index, const std::string& topic, std::string_view payload);

  int size() const { return static_cast<int>(ids_.size()); }
  const std::string& id(int index) const { return ids_[static_cast<std::size_t>(index)]; }

 private:
  void dispatch(int index, const mqtt::message& m);

  std::vector<std::string> ids_;
  std::vector<std::unique_ptr<mqtt::client>> clients_;
  std::mutex mu_;
  std::condition_variable idle_;
  std::shared_ptr<const handler> handler_;
  int running_ = 0;  // handler calls under way
};

}  // namespace otter::bench
