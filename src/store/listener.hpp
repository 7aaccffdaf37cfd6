#pragma once
// LISTEN otter_catalog on a connection of its own: another instance's command reaches this one.
#include <atomic>
#include <functional>
#include <string>
#include <thread>

namespace otter::store {

class listener {
 public:
  // on_change runs on the listener thread for every notification, and once after each
  // (re)connect (a change may have been missed while away).
  listener(std::string db_url, std::function<void()> on_change);
  ~listener();
  void start();
  void stop();

 private:
  void run();
  std::string db_url_;
  std::function<void()> on_change_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace otter::store
