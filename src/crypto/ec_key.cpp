#include "crypto/ec_key.hpp"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <vector>

#include "crypto/hash.hpp"

namespace otter::crypto {
namespace {

struct pkey_deleter {
  void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};
struct pkey_ctx_deleter {
  void operator()(EVP_PKEY_CTX* p) const noexcept { EVP_PKEY_CTX_free(p); }
};
struct md_ctx_deleter {
  void operator()(EVP_MD_CTX* p) const noexcept { EVP_MD_CTX_free(p); }
};
struct bio_deleter {
  void operator()(BIO* p) const noexcept { BIO_free_all(p); }
};
struct ecdsa_sig_deleter {
  void operator()(ECDSA_SIG* p) const noexcept { ECDSA_SIG_free(p); }
};
struct bn_deleter {
  void operator()(BIGNUM* p) const noexcept { BN_free(p); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_deleter>;
using pkey_ctx_ptr = std::unique_ptr<EVP_PKEY_CTX, pkey_ctx_deleter>;
using md_ctx_ptr = std::unique_ptr<EVP_MD_CTX, md_ctx_deleter>;
using bio_ptr = std::unique_ptr<BIO, bio_deleter>;
using ecdsa_sig_ptr = std::unique_ptr<ECDSA_SIG, ecdsa_sig_deleter>;
using bn_ptr = std::unique_ptr<BIGNUM, bn_deleter>;

using signature = std::array<std::uint8_t, 64>;

// A failed OpenSSL call leaves entries on the thread's error queue that would otherwise be
// blamed on the next, unrelated failure.
void clear_errors() noexcept {
  ERR_clear_error();
}

[[noreturn]] void fail(const char* what) {
  clear_errors();
  throw std::runtime_error(what);
}

// Never prompt on a terminal for the passphrase of an encrypted key: refuse it instead.
int no_passphrase(char*, int, int, void*) {
  return -1;
}

bool is_p256(EVP_PKEY* pkey) {
  if (pkey == nullptr || EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC) return false;
  char name[64] = {};
  std::size_t len = 0;
  if (EVP_PKEY_get_group_name(pkey, name, sizeof name, &len) != 1) return false;
  const std::string_view group(name, len);
  return group == "prime256v1" || group == "P-256" || group == "secp256r1";
}

bio_ptr read_bio(std::string_view text) {
  if (text.size() > static_cast<std::size_t>(INT_MAX)) return nullptr;
  return bio_ptr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

std::string bio_contents(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  if (len < 0 || (len > 0 && data == nullptr)) fail("reading an OpenSSL memory buffer failed");
  return std::string(data, static_cast<std::size_t>(len));
}

std::optional<signature> der_to_rs(const unsigned char* der, std::size_t len) {
  const unsigned char* p = der;
  ecdsa_sig_ptr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(len)));
  if (!sig) return std::nullopt;
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  signature out{};
  if (BN_bn2binpad(r, out.data(), 32) != 32 || BN_bn2binpad(s, out.data() + 32, 32) != 32)
    return std::nullopt;
  return out;
}

// An empty vector when r||s cannot be expressed (never for 64 bytes, barring allocation).
std::vector<unsigned char> rs_to_der(std::span<const std::uint8_t> rs) {
  bn_ptr r(BN_bin2bn(rs.data(), 32, nullptr));
  bn_ptr s(BN_bin2bn(rs.data() + 32, 32, nullptr));
  ecdsa_sig_ptr sig(ECDSA_SIG_new());
  if (!r || !s || !sig || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) return {};
  // The signature owns r and s now.
  static_cast<void>(r.release());
  static_cast<void>(s.release());
  const int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0) return {};
  std::vector<unsigned char> der(static_cast<std::size_t>(len));
  unsigned char* p = der.data();
  if (i2d_ECDSA_SIG(sig.get(), &p) != len) return {};
  return der;
}

// Signing contexts, initialised once and reused: OpenSSL 3 looks the algorithms up again on
// every init, under locks the signing threads share (~20 % of a signature, measured).
struct sign_pool {
  std::mutex mu;
  std::vector<pkey_ctx_ptr> ctxs;
};

// A signing context of the pool, returned to it when done (dropped if signing failed).
class pooled_sign_ctx {
 public:
  pooled_sign_ctx(EVP_PKEY* key, sign_pool& pool) : pool_(pool) {
    {
      std::lock_guard lock(pool_.mu);
      if (!pool_.ctxs.empty()) {
        ctx_ = std::move(pool_.ctxs.back());
        pool_.ctxs.pop_back();
        return;
      }
    }
    ctx_.reset(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
    if (!ctx_ || EVP_PKEY_sign_init(ctx_.get()) != 1 ||
        EVP_PKEY_CTX_set_signature_md(ctx_.get(), EVP_sha256()) != 1)
      fail("ECDSA sign init failed");
  }
  ~pooled_sign_ctx() {
    if (!ok_) return;
    std::lock_guard lock(pool_.mu);
    pool_.ctxs.push_back(std::move(ctx_));
  }
  pooled_sign_ctx(const pooled_sign_ctx&) = delete;
  pooled_sign_ctx& operator=(const pooled_sign_ctx&) = delete;

  signature sign(std::span<const std::uint8_t, 32> digest) {
    unsigned char der[80];  // a P-256 DER signature is at most 72 bytes
    std::size_t len = sizeof der;
    if (EVP_PKEY_sign(ctx_.get(), der, &len, digest.data(), digest.size()) != 1)
      fail("ECDSA sign failed");
    auto rs = der_to_rs(der, len);
    if (!rs) fail("ECDSA signature conversion failed");
    ok_ = true;
    return *rs;
  }

 private:
  sign_pool& pool_;
  pkey_ctx_ptr ctx_;
  bool ok_ = false;
};

}  // namespace

struct ec_key::impl {
  pkey_ptr pkey;
  // Computed once: encoding the public key through OpenSSL 3 costs more than signing, and every
  // manifest's header names it.
  std::string kid;
  sign_pool signers;
};

ec_key::ec_key(std::unique_ptr<impl> p, bool has_private)
    : impl_(std::move(p)), has_private_(has_private) {
  impl_->kid = sha256_hex(public_der()).substr(0, 16);
}
ec_key::ec_key(ec_key&&) noexcept = default;
ec_key& ec_key::operator=(ec_key&&) noexcept = default;
ec_key::~ec_key() = default;

ec_key ec_key::generate() {
  pkey_ptr pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!pkey) fail("P-256 key generation failed");
  auto p = std::make_unique<impl>();
  p->pkey = std::move(pkey);
  return ec_key(std::move(p), true);
}

result<ec_key> ec_key::from_private_pem(std::string_view pem) {
  bio_ptr bio = read_bio(pem);
  if (!bio) return make_error(errc::bad_request, "key is not a readable PEM private key");
  pkey_ptr pkey(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
  clear_errors();
  if (!pkey) return make_error(errc::bad_request, "key is not a readable PEM private key");
  if (!is_p256(pkey.get())) return make_error(errc::bad_request, "key is not an ECDSA P-256 key");
  auto p = std::make_unique<impl>();
  p->pkey = std::move(pkey);
  return ec_key(std::move(p), true);
}

result<ec_key> ec_key::from_private_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    return make_error(errc::not_found, "key file not found: " + path.string());
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return make_error(errc::internal, "cannot read key file: " + path.string());
  // A PEM key is a few hundred bytes; anything huge is not one.
  if (size > 64 * 1024)
    return make_error(errc::bad_request, "key file is too large: " + path.string());
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) return make_error(errc::internal, "cannot read key file: " + path.string());
  // Sized once, so that no reallocation leaves copies of the key behind to wipe.
  std::string text(static_cast<std::size_t>(size), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.gcount() != static_cast<std::streamsize>(text.size())) {
    OPENSSL_cleanse(text.data(), text.size());
    return make_error(errc::internal, "cannot read key file: " + path.string());
  }
  auto key = from_private_pem(text);
  OPENSSL_cleanse(text.data(), text.size());
  if (!key.ok()) return make_error(key.error().code, key.error().message + ": " + path.string());
  return key;
}

result<ec_key> ec_key::from_public_pem(std::string_view pem) {
  bio_ptr bio = read_bio(pem);
  if (!bio) return make_error(errc::bad_request, "key is not a readable PEM public key");
  pkey_ptr pkey(PEM_read_bio_PUBKEY(bio.get(), nullptr, no_passphrase, nullptr));
  clear_errors();
  if (!pkey) return make_error(errc::bad_request, "key is not a readable PEM public key");
  if (!is_p256(pkey.get())) return make_error(errc::bad_request, "key is not an ECDSA P-256 key");
  auto p = std::make_unique<impl>();
  p->pkey = std::move(pkey);
  return ec_key(std::move(p), false);
}

std::string ec_key::private_pem() const {
  if (!has_private_) throw std::logic_error("ec_key has no private key");
  // Secure-heap BIO: the buffer holding the key text is wiped when freed.
  bio_ptr bio(BIO_new(BIO_s_secmem()));
  if (!bio) fail("BIO allocation failed");
  if (PEM_write_bio_PrivateKey(bio.get(), impl_->pkey.get(), nullptr, nullptr, 0, nullptr,
                               nullptr) != 1)
    fail("writing the private key as PEM failed");
  return bio_contents(bio.get());
}

std::string ec_key::public_pem() const {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  if (!bio) fail("BIO allocation failed");
  if (PEM_write_bio_PUBKEY(bio.get(), impl_->pkey.get()) != 1)
    fail("writing the public key as PEM failed");
  return bio_contents(bio.get());
}

std::string ec_key::public_der() const {
  const int len = i2d_PUBKEY(impl_->pkey.get(), nullptr);
  if (len <= 0) fail("encoding the public key as DER failed");
  std::string der(static_cast<std::size_t>(len), '\0');
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  if (i2d_PUBKEY(impl_->pkey.get(), &p) != len) fail("encoding the public key as DER failed");
  return der;
}

std::string ec_key::kid() const {
  return impl_->kid;
}

std::array<std::uint8_t, 64> ec_key::sign(std::string_view data) const {
  if (!has_private_) throw std::logic_error("ec_key has no private key");
  const auto d = sha256(data);
  return pooled_sign_ctx(impl_->pkey.get(), impl_->signers).sign(d);
}

bool ec_key::verify(std::string_view data, std::span<const std::uint8_t> sig_rs) const {
  if (sig_rs.size() != 64) return false;
  const auto der = rs_to_der(sig_rs);
  if (der.empty()) return false;
  md_ctx_ptr ctx(EVP_MD_CTX_new());
  const auto* in = reinterpret_cast<const unsigned char*>(data.data());
  const bool ok =
      ctx &&
      EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, impl_->pkey.get()) == 1 &&
      EVP_DigestVerify(ctx.get(), der.data(), der.size(), in, data.size()) == 1;
  clear_errors();
  return ok;
}

std::array<std::uint8_t, 64> ec_key::sign_digest(std::span<const std::uint8_t, 32> digest) const {
  if (!has_private_) throw std::logic_error("ec_key has no private key");
  return pooled_sign_ctx(impl_->pkey.get(), impl_->signers).sign(digest);
}

bool ec_key::verify_digest(std::span<const std::uint8_t, 32> digest,
                           std::span<const std::uint8_t> sig_rs) const {
  if (sig_rs.size() != 64) return false;
  const auto der = rs_to_der(sig_rs);
  if (der.empty()) return false;
  pkey_ctx_ptr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, impl_->pkey.get(), nullptr));
  const bool ok =
      ctx && EVP_PKEY_verify_init(ctx.get()) == 1 &&
      EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256()) == 1 &&
      EVP_PKEY_verify(ctx.get(), der.data(), der.size(), digest.data(), digest.size()) == 1;
  clear_errors();
  return ok;
}

void* ec_key::native() const noexcept {
  return impl_ ? impl_->pkey.get() : nullptr;
}

result<void> write_private_file(const std::filesystem::path& path, std::string_view pem) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    const int err = errno;
    if (err == EEXIST) return make_error(errc::conflict, "file exists: " + path.string());
    return make_error(errc::internal, "cannot create " + path.string() + ": " + std::strerror(err));
  }
  // A half-written key must not survive to be mistaken for a good one.
  auto abandon = [&](const char* what) -> result<void> {
    const int err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    return make_error(errc::internal,
                      std::string(what) + " " + path.string() + ": " + std::strerror(err));
  };
  // The umask may have narrowed the mode further; the contract is exactly 0600.
  if (::fchmod(fd, 0600) != 0) return abandon("cannot chmod");
  std::size_t done = 0;
  while (done < pem.size()) {
    const ssize_t n = ::write(fd, pem.data() + done, pem.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return abandon("cannot write");
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) return abandon("cannot fsync");
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    return make_error(errc::internal, "cannot close " + path.string() + ": " + std::strerror(err));
  }
  return {};
}

}  // namespace otter::crypto
