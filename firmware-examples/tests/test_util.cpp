#include "test_util.hpp"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "crypto/hash.hpp"

namespace otter::device_test {

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

nlohmann::json shared_vector(const std::string& name) {
  return nlohmann::json::parse(read_text_file(std::string(OTTER_SHARED_DIR) + "/vectors/" + name));
}

otter_pubkey pubkey_of(const crypto::ec_key& key) {
  otter_pubkey pub{};
  const auto pem = key.public_pem();
  if (otter_pubkey_from_pem(pem.data(), pem.size(), &pub) != OTTER_OK)
    throw std::runtime_error("otter_pubkey_from_pem refused a key from OpenSSL");
  return pub;
}

int fixed_random_fn(void* ctx, std::uint8_t* out, std::size_t n) {
  auto* r = static_cast<fixed_random*>(ctx);
  if (r->at + n > r->bytes.size()) return -1;
  for (std::size_t i = 0; i < n; ++i) out[i] = r->bytes[r->at++];
  return 0;
}

int counter_random_fn(void* ctx, std::uint8_t* out, std::size_t n) {
  auto* c = static_cast<std::uint64_t*>(ctx);
  const auto d = crypto::sha256(std::to_string((*c)++));
  for (std::size_t i = 0; i < n; ++i) out[i] = d[i % d.size()];
  return 0;
}

std::string sign_jws(const crypto::ec_key& key, const nlohmann::ordered_json& header,
                     const nlohmann::ordered_json& claims) {
  const std::string input =
      crypto::base64url_encode(header.dump()) + "." + crypto::base64url_encode(claims.dump());
  const auto sig = key.sign(input);
  return input + "." + crypto::base64url_encode(std::span<const std::uint8_t>(sig));
}

nlohmann::ordered_json default_header(const crypto::ec_key& key) {
  return {{"alg", "ES256"}, {"typ", "otter-manifest"}, {"kid", key.kid()}};
}

device_fixture::device_fixture(const std::string& id, const std::string& version,
                               std::uint32_t chunk_len_max, std::uint32_t window_max)
    : id_(id), version_(version) {
  pub = pubkey_of(key);
  cfg.device_id = id_.c_str();
  cfg.model = "esp32-devkitc";
  cfg.version = version_.c_str();
  cfg.manifest_keys = &pub;
  cfg.manifest_key_count = 1;
  cfg.chunk_len_max = chunk_len_max;
  cfg.window_max = window_max;
  cfg.random = counter_random_fn;
  cfg.random_ctx = &counter;
  if (otter_init(&dev, &cfg) != OTTER_OK) throw std::runtime_error("otter_init failed");
}

std::pair<std::string, std::string> device_fixture::check() {
  char buf[1024];
  std::size_t len = 0;
  if (otter_build_check(&dev, buf, sizeof buf, &len) != OTTER_OK)
    throw std::runtime_error("otter_build_check failed");
  const auto j = nlohmann::json::parse(std::string(buf, len));
  return {j["req"], j["nonce"]};
}

nlohmann::ordered_json device_fixture::update_claims(const std::string& nonce,
                                                     const std::string& sha256_hex,
                                                     std::uint64_t size,
                                                     const std::string& version) {
  return {{"sub", id_},
          {"update", true},
          {"model", "esp32-devkitc"},
          {"version", version},
          {"from", version_},
          {"size", size},
          {"sha256", sha256_hex},
          {"nonce", nonce},
          {"iat", 1795000000},
          {"exp", 1795003600},
          {"rollout", "17"},
          {"chunk", {{"file", sha256_hex.substr(0, 16)}, {"max", 4096}, {"window", 16}}}};
}

std::string device_fixture::offer(const std::string& req, bool update, const std::string& jws) {
  return nlohmann::json{{"req", req}, {"update", update}, {"manifest", jws}}.dump();
}

otter_err device_fixture::handle(const std::string& payload, std::int64_t now,
                                 otter_manifest* out) {
  return otter_handle_offer(&dev, payload.data(), payload.size(), scratch.data(), scratch.size(),
                            now, out);
}

}  // namespace otter::device_test
