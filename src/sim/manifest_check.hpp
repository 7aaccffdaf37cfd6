#pragma once
// What a device checks before it trusts an answer to its check (PROTOCOL.md, "offer"): the
// signature with its pinned key, that the manifest is for this device and this check, that it
// has not expired, and that it does not take the device backwards unless it says so.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "crypto/ec_key.hpp"
#include "protocol/semver.hpp"

namespace otter::sim {

struct manifest {
  bool update = false;
  std::string sub;
  std::string nonce;
  std::int64_t iat = 0;
  std::int64_t exp = 0;
  std::int64_t retry_s = 0;  // update: false only; 0 when absent
  // update: true only
  std::string model;
  std::string version;
  std::string from;
  std::uint64_t size = 0;
  std::string sha256;
  std::string rollout;
  std::string chunk_file;
  std::uint32_t chunk_max = 0;
  std::uint32_t chunk_window = 0;
  std::optional<std::string> image_sig;
  std::optional<std::string> url;
  bool downgrade = false;
};

// What the device sent and runs; `now_unix` is the device's idea of the time.
struct manifest_expectations {
  std::string_view device;
  std::string_view nonce;
  std::string_view model;
  const protocol::semver& running;
  std::int64_t now_unix = 0;
};

struct manifest_verdict {
  // The claims as far as they could be read. Trust them only when accepted(); otherwise they
  // serve to word the `rejected` report (version, rollout).
  manifest claims;
  bool signature_ok = false;
  std::string refusal;  // empty: accepted; else why not, for the status report's `error`
  bool accepted() const noexcept { return refusal.empty(); }
};

manifest_verdict check_manifest(const crypto::ec_key& pinned, std::string_view compact,
                                const manifest_expectations& want);

}  // namespace otter::sim
