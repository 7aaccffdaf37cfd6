#pragma once
// The claims of a signed answer to a check, exactly as PROTOCOL.md lists them.
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "rollout/catalog.hpp"

namespace otter::service {

struct manifest_settings {
  std::chrono::seconds ttl{3600};
  std::chrono::seconds retry{600};
  std::uint32_t chunk_max = 4096;
  std::uint32_t chunk_window = 16;
};

// The chunk file id: the first 16 hex characters of the image SHA-256.
inline std::string chunk_file_id(const std::string& sha256_hex) {
  return sha256_hex.substr(0, 16);
}

nlohmann::ordered_json update_claims(const std::string& device, const std::string& from_version,
                                     const std::string& nonce, std::int64_t iat,
                                     const rollout::decision& d, const manifest_settings& s,
                                     const std::optional<std::string>& url);

nlohmann::ordered_json no_update_claims(const std::string& device, const std::string& nonce,
                                        std::int64_t iat, const manifest_settings& s);

}  // namespace otter::service
