#pragma once
// Helpers for the device core's tests: a device with a known key, and manifests signed with the
// project's own C++ signing code (src/crypto), so the C verifier is checked against another
// implementation.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "crypto/ec_key.hpp"
#include "otter_core.h"

namespace otter::device_test {

std::string read_text_file(const std::string& path);
nlohmann::json shared_vector(const std::string& name);

otter_pubkey pubkey_of(const crypto::ec_key& key);

// Random bytes from a fixed stream (so that a test can know the nonce in advance).
struct fixed_random {
  std::vector<std::uint8_t> bytes;
  std::size_t at = 0;
};
int fixed_random_fn(void* ctx, std::uint8_t* out, std::size_t n);
int counter_random_fn(void* ctx, std::uint8_t* out, std::size_t n);

// "h.p.s" signed by key; header and claims serialized as given.
std::string sign_jws(const crypto::ec_key& key, const nlohmann::ordered_json& header,
                     const nlohmann::ordered_json& claims);
nlohmann::ordered_json default_header(const crypto::ec_key& key);

struct device_fixture {
  crypto::ec_key key = crypto::ec_key::generate();
  otter_pubkey pub{};
  otter_config cfg{};
  otter_device dev{};
  std::uint64_t counter = 0;
  std::vector<char> scratch = std::vector<char>(4096);

  device_fixture(const std::string& id = "esp32-a1b2c3", const std::string& version = "1.0.0",
                 std::uint32_t chunk_len_max = 4096, std::uint32_t window_max = 16);
  // Builds a check and returns {req, nonce}.
  std::pair<std::string, std::string> check();
  // Claims of a valid update for the outstanding check.
  nlohmann::ordered_json update_claims(const std::string& nonce, const std::string& sha256_hex,
                                       std::uint64_t size, const std::string& version = "1.1.0");
  std::string offer(const std::string& req, bool update, const std::string& jws);
  otter_err handle(const std::string& offer_payload, std::int64_t now = 0,
                   otter_manifest* out = nullptr);

 private:
  std::string id_, version_;
};

}  // namespace otter::device_test
