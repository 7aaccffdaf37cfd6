#include "service/release_keys.hpp"

#include <fstream>
#include <sstream>

namespace otter::service {
namespace {

constexpr std::string_view kBegin = "-----BEGIN PUBLIC KEY-----";
constexpr std::string_view kEnd = "-----END PUBLIC KEY-----";

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

result<release_key_set> release_key_set::from_pem(std::string_view text) {
  release_key_set set;
  std::size_t pos = 0;
  for (;;) {
    const auto begin = text.find(kBegin, pos);
    if (begin == std::string_view::npos) break;
    const auto end = text.find(kEnd, begin);
    const auto n = set.keys_.size() + 1;
    if (end == std::string_view::npos)
      return make_error(errc::bad_request, "public key " + std::to_string(n) +
                                               " has no \"-----END PUBLIC KEY-----\" line");
    pos = end + kEnd.size();
    auto key = crypto::ec_key::from_public_pem(text.substr(begin, pos - begin));
    if (!key)
      return make_error(
          errc::bad_request,
          "public key " + std::to_string(n) + " is not a P-256 public key: " + key.error().message);
    set.keys_.push_back(std::move(key).value());
  }
  if (set.keys_.empty())
    return make_error(errc::bad_request,
                      "no \"-----BEGIN PUBLIC KEY-----\" block found; give the PEM public keys "
                      "of the release keys (openssl pkey -in release.pem -pubout)");
  return set;
}

result<release_key_set> release_key_set::from_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(errc::not_found, "cannot read " + path.string());
  std::ostringstream text;
  text << in.rdbuf();
  auto set = from_pem(text.str());
  if (!set) return make_error(set.error().code, path.string() + ": " + set.error().message);
  return set;
}

std::vector<std::string> release_key_set::kids() const {
  std::vector<std::string> out;
  out.reserve(keys_.size());
  for (const auto& k : keys_) out.push_back(k.kid());
  return out;
}

bool release_key_set::verify(std::span<const std::uint8_t> sig_rs,
                             std::span<const std::uint8_t, 32> digest) const {
  if (sig_rs.size() != 64) return false;
  for (const auto& k : keys_)
    if (k.verify_digest(digest, sig_rs)) return true;
  return false;
}

bool release_key_set::verify(std::string_view image_sig,
                             std::span<const std::uint8_t, 32> digest) const {
  const auto sig = decode_image_sig(image_sig);
  return sig && verify(std::span<const std::uint8_t>(*sig), digest);
}

std::optional<std::vector<std::uint8_t>> decode_image_sig(std::string_view image_sig) {
  auto sig = crypto::base64url_decode(image_sig);
  if (!sig || sig->size() != 64) return std::nullopt;
  return sig;
}

std::optional<crypto::digest> digest_from_hex(std::string_view hex) {
  crypto::digest d{};
  if (hex.size() != 2 * d.size()) return std::nullopt;
  for (std::size_t i = 0; i < d.size(); ++i) {
    const int hi = hex_value(hex[2 * i]);
    const int lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    d[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return d;
}

}  // namespace otter::service
