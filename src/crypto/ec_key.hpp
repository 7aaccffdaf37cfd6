#pragma once
// An ECDSA P-256 key (EVP_PKEY behind RAII): the service's signing key or a pinned public key.
#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "protocol/error.hpp"

namespace otter::crypto {

class ec_key {
 public:
  // A fresh P-256 key pair.
  static ec_key generate();
  // PEM private key, PKCS#8 ("BEGIN PRIVATE KEY") or SEC1 ("BEGIN EC PRIVATE KEY").
  // bad_request if unreadable or not P-256. The PEM text is never logged or echoed.
  static result<ec_key> from_private_pem(std::string_view pem);
  // Reads the file; not_found if missing, else as from_private_pem.
  static result<ec_key> from_private_file(const std::filesystem::path& path);
  // PEM "BEGIN PUBLIC KEY" (SubjectPublicKeyInfo).
  static result<ec_key> from_public_pem(std::string_view pem);

  ec_key(ec_key&&) noexcept;
  ec_key& operator=(ec_key&&) noexcept;
  ~ec_key();

  bool has_private() const noexcept { return has_private_; }
  std::string private_pem() const;  // PKCS#8 PEM; throws std::logic_error without a private key
  std::string public_pem() const;   // SubjectPublicKeyInfo PEM
  std::string public_der() const;   // SubjectPublicKeyInfo DER bytes
  // First 16 hex characters of SHA-256(public key DER).
  std::string kid() const;

  // ES256: ECDSA P-256 over SHA-256(data), as 64-byte r||s.
  std::array<std::uint8_t, 64> sign(std::string_view data) const;
  bool verify(std::string_view data, std::span<const std::uint8_t> sig_rs) const;
  // Same, for a digest already computed (image signatures over a streamed SHA-256).
  std::array<std::uint8_t, 64> sign_digest(std::span<const std::uint8_t, 32> digest) const;
  bool verify_digest(std::span<const std::uint8_t, 32> digest,
                     std::span<const std::uint8_t> sig_rs) const;

  void* native() const noexcept;  // EVP_PKEY*

 private:
  struct impl;
  ec_key(std::unique_ptr<impl> p, bool has_private);
  std::unique_ptr<impl> impl_;
  bool has_private_ = false;
};

// Writes PEM text to a new file with mode 0600 (O_EXCL: never overwrites). conflict if it exists.
result<void> write_private_file(const std::filesystem::path& path, std::string_view pem);

}  // namespace otter::crypto
