// Compact JWS manifests: the shared vector from an independent signer, round trips, refusals,
// and the openssl command line verifying what we sign.
#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "crypto/ec_key.hpp"
#include "crypto/hash.hpp"
#include "crypto/jws.hpp"
#include "support/ecdsa_der.hpp"
#include "support/files.hpp"

namespace otter::crypto {
namespace {

namespace fs = std::filesystem;
using test::quote;
using test::read_file;
using test::rs_to_der;
using test::run_shell;
using test::temp_dir;
using test::write_file;

nlohmann::json manifest_vector() {
  const auto text = read_file(fs::path(OTTER_SHARED_DIR) / "vectors" / "manifest.json");
  return nlohmann::json::parse(text);
}

nlohmann::ordered_json sample_claims() {
  nlohmann::ordered_json c;
  c["sub"] = "esp32-a1b2c3";
  c["update"] = true;
  c["model"] = "esp32-devkitc";
  c["version"] = "1.1.0";
  c["from"] = "1.0.0";
  c["size"] = 1048576;
  c["nonce"] = "9f86d081884c7d659a2feaa0c55ad015";
  c["iat"] = 1795000000;
  c["exp"] = 1795003600;
  c["rollout"] = "17";
  c["chunk"] = {{"file", "3a7bd3e2360a3d29"}, {"max", 4096}, {"window", 16}};
  return c;
}

std::string decode_text(std::string_view part) {
  const auto bytes = base64url_decode(part);
  return bytes ? std::string(bytes->begin(), bytes->end()) : std::string("<not base64url>");
}

// A compact JWS from raw header and payload texts, signed correctly, to reach the checks that
// follow the signature.
std::string sign_raw(const ec_key& key, std::string_view header, std::string_view payload) {
  std::string input = base64url_encode(header) + "." + base64url_encode(payload);
  return input + "." + base64url_encode(key.sign(input));
}

TEST(jws, shared_vector_verifies) {
  const auto v = manifest_vector();
  auto key = ec_key::from_public_pem(v.at("public_key").get<std::string>());
  ASSERT_TRUE(key.ok()) << key.error().message;
  EXPECT_EQ(key->kid(), v.at("kid").get<std::string>());

  auto parts = jws_verify(*key, v.at("jws").get<std::string>());
  ASSERT_TRUE(parts.ok()) << parts.error().message;
  EXPECT_EQ(parts->header.at("alg"), "ES256");
  EXPECT_EQ(parts->header.at("typ"), "otter-manifest");
  EXPECT_EQ(parts->header.at("kid"), v.at("kid"));
  EXPECT_EQ(parts->claims, v.at("claims"));
}

TEST(jws, shared_vector_tampered_is_forbidden) {
  const auto v = manifest_vector();
  auto key = ec_key::from_public_pem(v.at("public_key").get<std::string>());
  ASSERT_TRUE(key.ok());
  auto parts = jws_verify(*key, v.at("tampered").get<std::string>());
  ASSERT_FALSE(parts.ok());
  EXPECT_EQ(parts.error().code, errc::forbidden);
}

TEST(jws, shared_vector_refused_under_another_key) {
  const auto v = manifest_vector();
  auto parts = jws_verify(ec_key::generate(), v.at("jws").get<std::string>());
  ASSERT_FALSE(parts.ok());
  EXPECT_EQ(parts.error().code, errc::forbidden);
}

TEST(jws, sign_produces_the_protocol_header_and_claim_order) {
  const auto key = ec_key::generate();
  const auto claims = sample_claims();
  const auto jws = jws_sign(key, claims);

  const auto dot1 = jws.find('.');
  const auto dot2 = jws.find('.', dot1 + 1);
  ASSERT_NE(dot2, std::string::npos);
  EXPECT_EQ(jws.find('.', dot2 + 1), std::string::npos);
  EXPECT_EQ(jws.find('='), std::string::npos);
  EXPECT_EQ(decode_text(jws.substr(0, dot1)),
            R"({"alg":"ES256","typ":"otter-manifest","kid":")" + key.kid() + R"("})");
  EXPECT_EQ(decode_text(jws.substr(dot1 + 1, dot2 - dot1 - 1)), claims.dump());
  EXPECT_EQ(base64url_decode(jws.substr(dot2 + 1))->size(), 64u);

  auto pub = ec_key::from_public_pem(key.public_pem());
  ASSERT_TRUE(pub.ok());
  auto parts = jws_verify(*pub, jws);
  ASSERT_TRUE(parts.ok()) << parts.error().message;
  EXPECT_EQ(parts->claims, nlohmann::json::parse(claims.dump()));
  EXPECT_EQ(parts->header.at("kid"), key.kid());
}

TEST(jws, modified_parts_are_forbidden) {
  const auto key = ec_key::generate();
  const auto jws = jws_sign(key, sample_claims());
  const auto dot1 = jws.find('.');
  const auto dot2 = jws.find('.', dot1 + 1);

  auto claims = sample_claims();
  claims["version"] = "9.9.9";
  const std::string swapped_payload =
      jws.substr(0, dot1 + 1) + base64url_encode(claims.dump()) + jws.substr(dot2);
  auto r1 = jws_verify(key, swapped_payload);
  ASSERT_FALSE(r1.ok());
  EXPECT_EQ(r1.error().code, errc::forbidden);

  // Same alg, a different kid: the header is signed too.
  const std::string other_header =
      base64url_encode(std::string_view(R"({"alg":"ES256","typ":"otter-manifest","kid":"x"})")) +
      jws.substr(dot1);
  auto r2 = jws_verify(key, other_header);
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error().code, errc::forbidden);

  // A signature of the right shape but wrong value.
  std::string bad_sig = jws;
  bad_sig[dot2 + 1] = bad_sig[dot2 + 1] == 'A' ? 'B' : 'A';
  auto r3 = jws_verify(key, bad_sig);
  ASSERT_FALSE(r3.ok());
  EXPECT_EQ(r3.error().code, errc::forbidden);
}

TEST(jws, malformed_is_bad_request) {
  const auto key = ec_key::generate();
  const auto good = jws_sign(key, sample_claims());
  const auto dot1 = good.find('.');
  const auto dot2 = good.find('.', dot1 + 1);
  const std::string header = good.substr(0, dot1);
  const std::string payload = good.substr(dot1 + 1, dot2 - dot1 - 1);
  const std::string sig = good.substr(dot2 + 1);
  const std::string ok_header = R"({"alg":"ES256","typ":"otter-manifest"})";

  const std::string cases[] = {
      "",
      "abc",
      header + "." + payload,
      good + ".",
      good + "." + sig,
      "." + payload + "." + sig,
      header + ".." + sig,
      header + "." + payload + ".",
      header + "=." + payload + "." + sig,
      header + "." + payload + "." + sig + "==",
      header + "." + payload + "." + sig.substr(0, 40),  // not 64 bytes
      "!!!!." + payload + "." + sig,
      base64url_encode(std::string_view("not json")) + "." + payload + "." + sig,
      base64url_encode(std::string_view("[1,2]")) + "." + payload + "." + sig,
      base64url_encode(std::string_view(R"({"typ":"otter-manifest"})")) + "." + payload + "." + sig,
      base64url_encode(std::string_view(R"({"alg":"none"})")) + "." + payload + "." + sig,
      base64url_encode(std::string_view(R"({"alg":"HS256"})")) + "." + payload + "." + sig,
      base64url_encode(std::string_view(R"({"alg":["ES256"]})")) + "." + payload + "." + sig,
      // Correctly signed, but the payload is not a JSON object.
      sign_raw(key, ok_header, "[]"),
      sign_raw(key, ok_header, "\"text\""),
      sign_raw(key, ok_header, "{\"sub\":"),
      sign_raw(key, ok_header, "{\"sub\":\"\xff\"}"),
  };
  for (const auto& c : cases) {
    auto r = jws_verify(key, c);
    ASSERT_FALSE(r.ok()) << c;
    EXPECT_EQ(r.error().code, errc::bad_request) << c << ": " << r.error().message;
  }
  // The same hand-built route accepts a proper object, so the refusals above are for content.
  EXPECT_TRUE(jws_verify(key, sign_raw(key, ok_header, R"({"sub":"d"})")).ok());
}

// --- openssl as an independent verifier ---------------------------------------------------

// openssl's verdict on a compact JWS: "Verified OK" or its complaint.
std::string openssl_verify(const std::string& public_pem, const std::string& jws) {
  temp_dir dir("otter-jws");
  const auto dot2 = jws.rfind('.');
  const auto rs = base64url_decode(std::string_view(jws).substr(dot2 + 1));
  if (!rs || rs->size() != 64) return "bad signature encoding";
  write_file(dir / "pub.pem", public_pem);
  write_file(dir / "input", std::string_view(jws).substr(0, dot2));
  write_file(dir / "sig.der", rs_to_der(*rs));
  std::string out;
  const int rc = run_shell("openssl dgst -sha256 -verify " + quote(dir / "pub.pem") +
                               " -signature " + quote(dir / "sig.der") + " " + quote(dir / "input"),
                           dir, out);
  return rc == 0 ? out : "exit " + std::to_string(rc) + ": " + out;
}

TEST(jws, openssl_verifies_our_manifest) {
  const auto key = ec_key::generate();
  const auto jws = jws_sign(key, sample_claims());
  EXPECT_NE(openssl_verify(key.public_pem(), jws).find("Verified OK"), std::string::npos);

  std::string broken = jws;
  broken[broken.find('.') + 3] ^= 1;  // still base64url, different payload
  EXPECT_EQ(openssl_verify(key.public_pem(), broken).find("Verified OK"), std::string::npos);
}

TEST(jws, openssl_agrees_with_the_shared_vector) {
  const auto v = manifest_vector();
  const auto pem = v.at("public_key").get<std::string>();
  EXPECT_NE(openssl_verify(pem, v.at("jws").get<std::string>()).find("Verified OK"),
            std::string::npos);
  EXPECT_EQ(openssl_verify(pem, v.at("tampered").get<std::string>()).find("Verified OK"),
            std::string::npos);
}

}  // namespace
}  // namespace otter::crypto
