#pragma once
// HMAC-SHA256 under one key, many messages (the download links' tokens). OpenSSL 3's one-shot
// HMAC() fetches the MAC and digest implementations and keys a fresh context on every call,
// under the provider store's locks; here the keyed context is made once and copied per message.
#include <memory>
#include <span>
#include <string_view>

#include "crypto/hash.hpp"

namespace otter::crypto {

class hmac_key {
 public:
  // Throws std::runtime_error if OpenSSL cannot set up HMAC-SHA256. The key may be empty.
  explicit hmac_key(std::span<const std::uint8_t> key);
  ~hmac_key();
  hmac_key(hmac_key&&) noexcept;
  hmac_key& operator=(hmac_key&&) noexcept;

  // Thread-safe: each call works on its own copy of the keyed context.
  digest mac(std::string_view data) const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace otter::crypto
