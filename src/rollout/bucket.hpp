#pragma once
// Stable percent buckets: the same device stays in a canary as it widens.
#include <cstdint>
#include <string_view>

namespace otter::rollout {

// u64(first 8 bytes of SHA-256("<rollout id>:<device id>"), big-endian) mod 10000.
std::uint32_t bucket(std::string_view rollout_id, std::string_view device_id);

// Included iff bucket < basis_points (basis_points = round(P * 100)).
inline bool in_percent(std::uint32_t bucket_value, std::uint32_t basis_points) noexcept {
  return bucket_value < basis_points;
}

}  // namespace otter::rollout
