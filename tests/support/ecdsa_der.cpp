#include "support/ecdsa_der.hpp"

#include <openssl/bn.h>
#include <openssl/ecdsa.h>

namespace otter::test {

std::string rs_to_der(std::span<const std::uint8_t> rs) {
  if (rs.size() != 64) return {};
  ECDSA_SIG* sig = ECDSA_SIG_new();
  ECDSA_SIG_set0(sig, BN_bin2bn(rs.data(), 32, nullptr), BN_bin2bn(rs.data() + 32, 32, nullptr));
  unsigned char* der = nullptr;
  const int n = i2d_ECDSA_SIG(sig, &der);
  std::string out(reinterpret_cast<const char*>(der), static_cast<std::size_t>(n > 0 ? n : 0));
  OPENSSL_free(der);
  ECDSA_SIG_free(sig);
  return out;
}

std::vector<std::uint8_t> der_to_rs(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
  if (sig == nullptr) return {};
  std::vector<std::uint8_t> rs(64);
  BN_bn2binpad(ECDSA_SIG_get0_r(sig), rs.data(), 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(sig), rs.data() + 32, 32);
  ECDSA_SIG_free(sig);
  return rs;
}

}  // namespace otter::test
