#pragma once
// SHA-256, HMAC-SHA256 and base64url: small wrappers over OpenSSL 3.
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace otter::crypto {

using digest = std::array<std::uint8_t, 32>;

digest sha256(std::span<const std::uint8_t> data);
digest sha256(std::string_view data);
std::string to_hex(std::span<const std::uint8_t> bytes);  // lowercase
std::string sha256_hex(std::string_view data);

// Incremental SHA-256 for images that arrive or are read in pieces.
class sha256_stream {
 public:
  sha256_stream();
  ~sha256_stream();
  sha256_stream(sha256_stream&&) noexcept;
  sha256_stream& operator=(sha256_stream&&) noexcept;
  void update(std::span<const std::uint8_t> data);
  void update(std::string_view data);
  digest finish();  // once

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// One message; for many under one key, crypto::hmac_key (hmac_key.hpp).
digest hmac_sha256(std::span<const std::uint8_t> key, std::string_view data);
// Constant-time comparison.
bool equal_ct(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) noexcept;

std::string base64url_encode(std::span<const std::uint8_t> data);  // no padding
std::string base64url_encode(std::string_view data);
// nullopt on any character outside the base64url alphabet, on padding, or on a bad length.
std::optional<std::vector<std::uint8_t>> base64url_decode(std::string_view text);

// Cryptographically random bytes (RAND_bytes).
std::vector<std::uint8_t> random_bytes(std::size_t n);

}  // namespace otter::crypto
