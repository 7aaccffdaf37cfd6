#pragma once
// The handlers' view of the outside world: small interfaces, so the handlers are unit-tested with
// fakes and the real broker and database are wired in only by service.cpp.
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "rollout/catalog.hpp"
#include "store/records.hpp"

namespace otter::service {

class outbox {
 public:
  virtual ~outbox() = default;
  // Best effort: a failure is logged by the implementation; the record is already written.
  virtual void publish(const std::string& topic, std::string_view payload, int qos,
                       bool retained) = 0;
  // Blocks until the transport holds less than its limit of bytes not yet passed on, or until
  // `timeout` (false). Bulk senders (chunks) call it before each message, so a slow broker
  // slows them down instead of filling memory.
  virtual bool wait_for_room(std::chrono::milliseconds timeout) {
    (void)timeout;
    return true;
  }
};

class recorder {
 public:
  virtual ~recorder() = default;
  // All of the set or nothing; false when the queue is full (answer "unavailable").
  virtual bool submit(store::record_set&& set) = 0;
};

// The catalog every check is answered from; replaced whole, read without blocking writers long.
class catalog_source {
 public:
  catalog_source() : current_(std::make_shared<const rollout::catalog>()) {}
  std::shared_ptr<const rollout::catalog> current() const {
    std::lock_guard lock(mu_);
    return current_;
  }
  void replace(std::shared_ptr<const rollout::catalog> next) {
    std::lock_guard lock(mu_);
    current_ = std::move(next);
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const rollout::catalog> current_;
};

}  // namespace otter::service
