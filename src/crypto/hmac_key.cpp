#include "crypto/hmac_key.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <stdexcept>

namespace otter::crypto {
namespace {

struct mac_deleter {
  void operator()(EVP_MAC* p) const noexcept { EVP_MAC_free(p); }
};
struct mac_ctx_deleter {
  void operator()(EVP_MAC_CTX* p) const noexcept { EVP_MAC_CTX_free(p); }
};

using mac_ptr = std::unique_ptr<EVP_MAC, mac_deleter>;
using mac_ctx_ptr = std::unique_ptr<EVP_MAC_CTX, mac_ctx_deleter>;

}  // namespace

struct hmac_key::impl {
  mac_ctx_ptr keyed;  // only ever copied, never updated: safe to share between threads
};

hmac_key::hmac_key(std::span<const std::uint8_t> key) : impl_(std::make_unique<impl>()) {
  mac_ptr mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
  if (!mac) throw std::runtime_error("HMAC unavailable in OpenSSL");
  impl_->keyed.reset(EVP_MAC_CTX_new(mac.get()));
  char digest_name[] = "SHA256";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
      OSSL_PARAM_construct_end()};
  // EVP_MAC_init with a null key pointer means "keep the old key": point at something valid.
  static constexpr std::uint8_t kEmpty = 0;
  const std::uint8_t* key_ptr = key.empty() ? &kEmpty : key.data();
  if (!impl_->keyed || EVP_MAC_init(impl_->keyed.get(), key_ptr, key.size(), params) != 1)
    throw std::runtime_error("HMAC-SHA256 key setup failed");
}

hmac_key::~hmac_key() = default;
hmac_key::hmac_key(hmac_key&&) noexcept = default;
hmac_key& hmac_key::operator=(hmac_key&&) noexcept = default;

digest hmac_key::mac(std::string_view data) const {
  if (!impl_) throw std::logic_error("hmac_key used after move");
  mac_ctx_ptr ctx(EVP_MAC_CTX_dup(impl_->keyed.get()));
  digest out{};
  std::size_t len = 0;
  if (!ctx ||
      EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(data.data()), data.size()) !=
          1 ||
      EVP_MAC_final(ctx.get(), out.data(), &len, out.size()) != 1 || len != out.size())
    throw std::runtime_error("HMAC-SHA256 failed");
  return out;
}

}  // namespace otter::crypto
