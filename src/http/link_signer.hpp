#pragma once
// Signed, expiring download links: /v1/images/<sha256>?d=<device>&exp=<unix>&t=<token>, where the
// token is base64url(HMAC-SHA256(secret, "v1|<device>|<sha256>|<exp>")). Pure apart from
// load_or_create, so tests pass the time in.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/hmac_key.hpp"

namespace otter::http {

enum class link_verdict { ok, malformed, bad_token, expired };
const char* to_string(link_verdict v) noexcept;

struct link_check {
  link_verdict verdict = link_verdict::malformed;
  std::int64_t exp = 0;  // set when the parameters parsed
};

class link_signer {
 public:
  static constexpr std::size_t kMinSecretBytes = 32;

  // Throws std::invalid_argument when the secret is shorter than kMinSecretBytes.
  explicit link_signer(std::vector<std::uint8_t> secret);

  // Reads the secret (the file's bytes, trailing whitespace dropped). A missing file is created
  // with 32 random bytes (64 hex characters), mode 0600, without ever replacing a file another
  // process made meanwhile. Throws std::runtime_error naming the path, never the secret.
  // What load_or_create found, for the start-up log: whether it made the file, and the
  // file's permission bits (a secret others may read deserves a warning).
  struct secret_file_info {
    bool created = false;
    unsigned mode = 0;
  };
  static link_signer load_or_create(const std::filesystem::path& file,
                                    secret_file_info* info = nullptr);

  // The path and query of the link; device must be a valid protocol name, sha256 64 lowercase hex.
  std::string make(std::string_view device, std::string_view sha256, std::int64_t exp) const;
  std::string token(std::string_view device, std::string_view sha256, std::int64_t exp) const;

  // Checks the query parameters of a link to `sha256` at unix time `now`. The token is compared
  // in constant time before expiry is looked at, so a forged link never learns more than "no".
  link_check verify(std::string_view sha256, std::string_view device, std::string_view exp,
                    std::string_view token, std::int64_t now) const;

 private:
  crypto::hmac_key key_;  // keyed once: a check's link costs no OpenSSL fetch
};

}  // namespace otter::http
