#pragma once
// LISTEN otter_catalog, otter_grants and otter_devices on a connection of its own: another
// instance's commands, its chunk grants and what it learned of devices reach this one.
#include <atomic>
#include <functional>
#include <string>
#include <thread>

namespace otter::store {

// All run on the listener thread.
struct listener_handlers {
  // Every catalog notification, and once after each (re)connect (a change may have been
  // missed while away).
  std::function<void()> on_change;
  // Optional: the payload of every otter_grants / otter_devices notification.
  std::function<void(const std::string&)> on_grants;
  std::function<void(const std::string&)> on_devices;
  // Optional: after each connect, the first one included (what was announced while not
  // listening, before the first connect or while away, was missed).
  std::function<void()> on_connect;
};

class listener {
 public:
  listener(std::string db_url, listener_handlers handlers);
  ~listener();
  void start();
  void stop();

 private:
  void run();
  std::string db_url_;
  listener_handlers h_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace otter::store
