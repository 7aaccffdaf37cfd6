#pragma once
// Time is passed in, so expiry and rollout logic can be tested without sleeping.
#include <atomic>
#include <chrono>

namespace otter::service {

class clock {
 public:
  using time_point = std::chrono::system_clock::time_point;
  virtual ~clock() = default;
  virtual time_point now() const = 0;
};

class system_clock final : public clock {
 public:
  time_point now() const override { return std::chrono::system_clock::now(); }
};

class manual_clock final : public clock {
 public:
  explicit manual_clock(time_point start) : t_(start.time_since_epoch().count()) {}
  time_point now() const override { return time_point(time_point::duration(t_.load())); }
  void advance(std::chrono::system_clock::duration d) { t_ += d.count(); }

 private:
  std::atomic<time_point::rep> t_;
};

inline std::int64_t unix_seconds(clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace otter::service
