#include "crypto/jws.hpp"

#include <optional>

#include "crypto/hash.hpp"

namespace otter::crypto {
namespace {

std::optional<nlohmann::json> decode_object(std::string_view part) {
  auto bytes = base64url_decode(part);
  if (!bytes) return std::nullopt;
  auto j = nlohmann::json::parse(bytes->begin(), bytes->end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  return j;
}

}  // namespace

std::string jws_sign(const ec_key& key, const nlohmann::ordered_json& claims) {
  nlohmann::ordered_json header;
  header["alg"] = "ES256";
  header["typ"] = "otter-manifest";
  header["kid"] = key.kid();
  std::string input = base64url_encode(header.dump());
  input += '.';
  input += base64url_encode(claims.dump());
  const auto sig = key.sign(input);
  input += '.';
  input += base64url_encode(sig);
  return input;
}

result<jws_parts> jws_verify(const ec_key& public_key, std::string_view compact) {
  const auto dot1 = compact.find('.');
  const auto dot2 = dot1 == std::string_view::npos ? dot1 : compact.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || compact.find('.', dot2 + 1) != std::string_view::npos)
    return make_error(errc::bad_request, "manifest is not a compact JWS (3 parts)");
  const auto h = compact.substr(0, dot1);
  const auto p = compact.substr(dot1 + 1, dot2 - dot1 - 1);
  const auto s = compact.substr(dot2 + 1);

  auto header = decode_object(h);
  if (!header) return make_error(errc::bad_request, "JWS header is not a base64url JSON object");
  const auto alg = header->find("alg");
  if (alg == header->end() || !alg->is_string() || alg->get<std::string>() != "ES256")
    return make_error(errc::bad_request, "JWS alg is not ES256");
  auto claims = decode_object(p);
  if (!claims) return make_error(errc::bad_request, "JWS payload is not a base64url JSON object");
  const auto sig = base64url_decode(s);
  if (!sig) return make_error(errc::bad_request, "JWS signature is not base64url");
  if (sig->size() != 64) return make_error(errc::bad_request, "JWS signature is not 64 bytes");

  // Malformed input is bad_request whatever its signature; forbidden means well-formed but forged.
  if (!public_key.verify(compact.substr(0, dot2), *sig))
    return make_error(errc::forbidden, "JWS signature does not verify");
  return jws_parts{std::move(*header), std::move(*claims)};
}

}  // namespace otter::crypto
