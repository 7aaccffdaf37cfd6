#pragma once
// Compact JWS (RFC 7515) with ES256, as the manifests of PROTOCOL.md are signed.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "crypto/ec_key.hpp"
#include "protocol/error.hpp"

namespace otter::crypto {

// Header {"alg":"ES256","typ":"otter-manifest","kid":<key.kid()>}; claims serialized as given
// (ordered_json keeps the order of the protocol table).
std::string jws_sign(const ec_key& key, const nlohmann::ordered_json& claims);

struct jws_parts {
  nlohmann::json header;
  nlohmann::json claims;
};
// Verifies structure (3 parts, base64url, JSON objects), alg ES256 and the signature.
// bad_request for malformed input, forbidden for a signature that does not verify.
result<jws_parts> jws_verify(const ec_key& public_key, std::string_view compact);

}  // namespace otter::crypto
