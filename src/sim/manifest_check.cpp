#include "sim/manifest_check.hpp"

#include <limits>
#include <nlohmann/json.hpp>

#include "crypto/hash.hpp"
#include "crypto/jws.hpp"
#include "protocol/ids.hpp"

namespace otter::sim {
namespace {

using nlohmann::json;

// The claims of a JWS without verifying it: only to word a refusal.
json unverified_claims(std::string_view compact) {
  const auto dot1 = compact.find('.');
  if (dot1 == std::string_view::npos) return json::object();
  const auto dot2 = compact.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos) return json::object();
  auto bytes = crypto::base64url_decode(compact.substr(dot1 + 1, dot2 - dot1 - 1));
  if (!bytes) return json::object();
  auto j = json::parse(bytes->begin(), bytes->end(), nullptr, false);
  return j.is_object() ? j : json::object();
}

std::string str(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool has_int(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number_integer();
}

std::int64_t int_or(const json& j, const char* key, std::int64_t fallback) {
  return has_int(j, key) ? j.at(key).get<std::int64_t>() : fallback;
}

// Everything that can be read, whether or not it is valid; validation is check_manifest's.
manifest read_claims(const json& c) {
  manifest m;
  m.update = c.value("update", false) == true;
  m.sub = str(c, "sub");
  m.nonce = str(c, "nonce");
  m.iat = int_or(c, "iat", 0);
  m.exp = int_or(c, "exp", 0);
  m.retry_s = int_or(c, "retry_s", 0);
  m.model = str(c, "model");
  m.version = str(c, "version");
  m.from = str(c, "from");
  m.size =
      c.contains("size") && c["size"].is_number_unsigned() ? c["size"].get<std::uint64_t>() : 0;
  m.sha256 = str(c, "sha256");
  m.rollout = str(c, "rollout");
  if (const auto ch = c.find("chunk"); ch != c.end() && ch->is_object()) {
    m.chunk_file = str(*ch, "file");
    const auto small = [&](const char* key) -> std::uint32_t {
      const auto v = int_or(*ch, key, 0);
      return v > 0 && v <= std::numeric_limits<std::uint32_t>::max() ? static_cast<std::uint32_t>(v)
                                                                     : 0;
    };
    m.chunk_max = small("max");
    m.chunk_window = small("window");
  }
  if (c.contains("image_sig") && c["image_sig"].is_string()) m.image_sig = str(c, "image_sig");
  if (c.contains("url") && c["url"].is_string()) m.url = str(c, "url");
  m.downgrade = c.value("downgrade", false) == true;
  return m;
}

// The update-specific claims: present and well-formed, and not a step backwards.
std::string refuse_update(const manifest& m, const json& c, const manifest_expectations& want) {
  if (m.model != want.model)
    return "manifest is for model \"" + m.model + "\", this device is \"" +
           std::string(want.model) + "\"";
  const auto target = protocol::parse_semver(m.version);
  if (!target) return "manifest version \"" + m.version + "\" is not a semantic version";
  const auto order = protocol::compare(*target, want.running);
  if (order == 0) return "manifest offers " + m.version + ", the version this device runs";
  if (order < 0 && !m.downgrade)
    return "manifest offers " + m.version + ", lower than the running " + want.running.text() +
           ", without \"downgrade\": refusing a downgrade";
  if (!c.contains("size") || !c["size"].is_number_unsigned() || m.size == 0)
    return "manifest \"size\" is missing or not a positive integer";
  if (!protocol::valid_sha256_hex(m.sha256))
    return "manifest \"sha256\" is not 64 lowercase hex characters";
  if (m.rollout.empty()) return "manifest has no \"rollout\"";
  if (m.chunk_file.empty() && !m.url) return "manifest has neither \"chunk\" nor \"url\"";
  if (!m.chunk_file.empty()) {
    if (m.chunk_file != m.sha256.substr(0, 16))
      return "manifest chunk.file is not the first 16 characters of its sha256";
    if (m.chunk_max == 0 || m.chunk_window == 0)
      return "manifest chunk.max and chunk.window must be positive integers";
  }
  if (m.image_sig && !crypto::base64url_decode(*m.image_sig))
    return "manifest \"image_sig\" is not base64url";
  return {};
}

}  // namespace

manifest_verdict check_manifest(const crypto::ec_key& pinned, std::string_view compact,
                                const manifest_expectations& want) {
  manifest_verdict v;
  auto verified = crypto::jws_verify(pinned, compact);
  if (!verified) {
    v.claims = read_claims(unverified_claims(compact));
    v.refusal =
        verified.error().code == errc::forbidden
            ? "manifest signature does not verify with the pinned key (kid " + pinned.kid() + ")"
            : "manifest is malformed: " + verified.error().message;
    return v;
  }
  v.signature_ok = true;
  const json& h = verified->header;
  const json& c = verified->claims;
  v.claims = read_claims(c);
  const manifest& m = v.claims;

  // The order of PROTOCOL.md: key, device, check, time, version.
  if (str(h, "typ") != "otter-manifest")
    v.refusal = "manifest header typ is \"" + str(h, "typ") + "\", not \"otter-manifest\"";
  else if (str(h, "kid") != pinned.kid())
    v.refusal = "manifest kid \"" + str(h, "kid") + "\" is not the pinned key's " + pinned.kid();
  else if (m.sub != want.device)
    v.refusal =
        "manifest sub \"" + m.sub + "\" is not this device (" + std::string(want.device) + ")";
  else if (m.nonce != want.nonce)
    v.refusal = "manifest nonce does not match the nonce of this check (a replayed answer?)";
  else if (!has_int(c, "exp"))
    v.refusal = "manifest has no integer \"exp\"";
  else if (want.now_unix > m.exp)
    v.refusal = "manifest expired at " + std::to_string(m.exp) + " (device time " +
                std::to_string(want.now_unix) + ")";
  else if (!c.contains("update") || !c["update"].is_boolean())
    v.refusal = "manifest has no boolean \"update\"";
  else if (m.update)
    v.refusal = refuse_update(m, c, want);
  return v;
}

}  // namespace otter::sim
