#pragma once
// LISTEN otter_catalog and otter_grants on a connection of its own: another instance's command
// and its chunk grants reach this one.
#include <atomic>
#include <functional>
#include <string>
#include <thread>

namespace otter::store {

class listener {
 public:
  // on_change runs on the listener thread for every notification, and once after each
  // (re)connect (a change may have been missed while away).
  // on_grants (optional) gets the payload of every otter_grants notification, and
  // on_reconnect (optional) runs after each reconnect: the grants announced while away were
  // missed.
  listener(std::string db_url, std::function<void()> on_change,
           std::function<void(const std::string&)> on_grants = {},
           std::function<void()> on_reconnect = {});
  ~listener();
  void start();
  void stop();

 private:
  void run();
  std::string db_url_;
  std::function<void()> on_change_;
  std::function<void(const std::string&)> on_grants_;
  std::function<void()> on_reconnect_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace otter::store
