#pragma once
// The one thing openssl and JOSE disagree on for ECDSA P-256: the signature's encoding, DER
// (`openssl dgst -sign`) vs the 64-byte r||s of JWS and PROTOCOL.md's image_sig. Tests convert
// with these to check otter against the openssl command line both ways.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace otter::test {

std::string rs_to_der(std::span<const std::uint8_t> rs);      // rs: 64 bytes
std::vector<std::uint8_t> der_to_rs(const std::string& der);  // empty if not a DER signature

}  // namespace otter::test
