#include "service/held_statuses.hpp"

namespace otter::service {

held_statuses::held_statuses(std::chrono::milliseconds wait, std::size_t max_devices,
                             std::size_t max_per_device)
    : wait_(wait), max_devices_(max_devices), max_per_device_(max_per_device) {}

bool held_statuses::holding(const std::string& device) const {
  std::lock_guard lock(mu_);
  return held_.count(device) != 0;
}

bool held_statuses::hold(const std::string& device, protocol::status_msg msg, clock::time_point at,
                         std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(mu_);
  auto it = held_.find(device);
  if (it == held_.end()) {
    if (held_.size() >= max_devices_) return false;
    it = held_.try_emplace(device).first;
  } else if (it->second.reports.size() >= max_per_device_) {
    return false;
  }
  auto& q = it->second.reports;
  // A report behind others waits no longer than the first: they leave together.
  const auto until = q.empty() ? now + wait_ : q.front().until;
  q.push_back({std::move(msg), at, until});
  ++count_;
  return true;
}

std::vector<held_statuses::held> held_statuses::take(const std::string& device) {
  std::lock_guard lock(mu_);
  std::vector<held> out;
  auto it = held_.find(device);
  if (it == held_.end()) return out;
  auto& q = it->second.reports;
  out.assign(std::make_move_iterator(q.begin()), std::make_move_iterator(q.end()));
  count_ -= out.size();
  held_.erase(it);
  return out;
}

bool held_statuses::claim_release(const std::string& device) {
  std::lock_guard lock(mu_);
  auto it = held_.find(device);
  if (it == held_.end() || it->second.release_posted) return false;
  it->second.release_posted = true;
  return true;
}

std::vector<std::string> held_statuses::claim_due(std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (auto& [device, d] : held_)
    if (!d.release_posted && !d.reports.empty() && d.reports.front().until <= now) {
      d.release_posted = true;
      out.push_back(device);
    }
  return out;
}

std::vector<std::string> held_statuses::devices() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  out.reserve(held_.size());
  for (const auto& [device, q] : held_) out.push_back(device);
  return out;
}

std::size_t held_statuses::size() const {
  std::lock_guard lock(mu_);
  return count_;
}

}  // namespace otter::service
