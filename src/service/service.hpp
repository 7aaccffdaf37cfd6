#pragma once
// otterd: the broker, the database and the handlers wired together.
#include <atomic>
#include <memory>

#include "config/config.hpp"
#include "crypto/ec_key.hpp"

namespace otter::service {

class service {
 public:
  service(config::settings settings, crypto::ec_key signing_key);
  ~service();
  // Connects, serves until stop is set, then drains and disconnects. Returns an exit code.
  int run(const std::atomic<bool>& stop);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace otter::service
