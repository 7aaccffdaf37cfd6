#pragma once
// The release keys (OTTER_RELEASE_KEYS): public keys of the offline key that signs images. Kept
// apart from the service's signing key, as Uptane separates its image and director roles: a
// stolen server cannot make an image devices will accept.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/ec_key.hpp"
#include "crypto/hash.hpp"
#include "protocol/error.hpp"

namespace otter::service {

class release_key_set {
 public:
  // Every "BEGIN PUBLIC KEY" block in the text, in order. bad_request if there is none or one
  // is not a P-256 public key (naming which one).
  static result<release_key_set> from_pem(std::string_view text);
  // Reads the file; not_found if it cannot be read, else as from_pem.
  static result<release_key_set> from_file(const std::filesystem::path& path);

  const std::vector<crypto::ec_key>& keys() const noexcept { return keys_; }
  bool empty() const noexcept { return keys_.empty(); }
  std::size_t size() const noexcept { return keys_.size(); }
  std::vector<std::string> kids() const;

  // True if the 64-byte r||s signature verifies over the digest with any of the keys.
  bool verify(std::span<const std::uint8_t> sig_rs, std::span<const std::uint8_t, 32> digest) const;
  // Same for the image_sig text (base64url r||s); false when it does not decode to 64 bytes.
  bool verify(std::string_view image_sig, std::span<const std::uint8_t, 32> digest) const;

 private:
  std::vector<crypto::ec_key> keys_;
};

// The 64-byte r||s of an image_sig, or nullopt when it is not base64url of exactly 64 bytes.
std::optional<std::vector<std::uint8_t>> decode_image_sig(std::string_view image_sig);

// A lowercase or uppercase hex SHA-256 as its 32 bytes; nullopt when it is not one.
std::optional<crypto::digest> digest_from_hex(std::string_view hex);

}  // namespace otter::service
