#include "rollout/bucket.hpp"

#include <string>

#include "crypto/hash.hpp"

namespace otter::rollout {

std::uint32_t bucket(std::string_view rollout_id, std::string_view device_id) {
  std::string input;
  input.reserve(rollout_id.size() + 1 + device_id.size());
  input.append(rollout_id).append(1, ':').append(device_id);
  const auto d = crypto::sha256(input);
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v = (v << 8) | d[i];
  return static_cast<std::uint32_t>(v % 10000);
}

}  // namespace otter::rollout
