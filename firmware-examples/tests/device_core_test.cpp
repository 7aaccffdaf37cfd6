// The device core's messages and manifest checks (PROTOCOL.md "check", "offer", "status"),
// against the shared vectors and manifests signed by the project's C++ code.
#include <gtest/gtest.h>

#include <set>

#include "crypto/hash.hpp"
#include "test_util.hpp"

namespace otter::device_test {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

const std::string kSha = crypto::sha256_hex("image");

TEST(device_core_errors, every_code_has_a_distinct_stable_name) {
  std::set<std::string> names;
  for (int e = OTTER_OUT_OF_ORDER; e >= OTTER_E_TOPIC; --e) {
    const std::string name = otter_err_name(e);
    EXPECT_NE(name, "unknown") << e;
    EXPECT_TRUE(names.insert(name).second) << name;
    EXPECT_STRNE(otter_strerror(e), "unknown error") << e;
  }
  EXPECT_STREQ(otter_err_name(OTTER_E_SIGNATURE), "signature");
  EXPECT_STREQ(otter_err_name(OTTER_E_NOT_NEWER), "not_newer");
  EXPECT_STREQ(otter_err_name(12345), "unknown");
}

TEST(device_core_keys, pem_key_and_kid_match_the_shared_vector) {
  const auto v = shared_vector("manifest.json");
  const std::string pem = v["public_key"];
  otter_pubkey pub{};
  ASSERT_EQ(otter_pubkey_from_pem(pem.data(), pem.size(), &pub), OTTER_OK);
  EXPECT_STREQ(pub.kid, v["kid"].get<std::string>().c_str());
  EXPECT_EQ(pub.point[0], 0x04);
  // Same kid as the project's C++ code for a fresh key.
  auto k = crypto::ec_key::generate();
  EXPECT_EQ(std::string(pubkey_of(k).kid), k.kid());
}

TEST(device_core_keys, malformed_pem_is_refused) {
  const auto v = shared_vector("manifest.json");
  const std::string pem = v["public_key"];
  otter_pubkey pub{};
  for (const std::string& bad :
       {std::string(), std::string("hello"), pem.substr(0, pem.size() / 2),
        std::string("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
        std::string("-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n")}) {
    EXPECT_EQ(otter_pubkey_from_pem(bad.data(), bad.size(), &pub), OTTER_E_PEM) << bad;
  }
  std::string flipped = pem;
  flipped[40] = flipped[40] == 'A' ? 'B' : 'A';  // inside the DER prefix or the point
  otter_pubkey p2{};
  const auto rc = otter_pubkey_from_pem(flipped.data(), flipped.size(), &p2);
  if (rc == OTTER_OK) {
    EXPECT_STRNE(p2.kid, v["kid"].get<std::string>().c_str());
  }
}

// The vector's device, with a random source that yields the vector's nonce.
struct vector_device {
  json v = shared_vector("manifest.json");
  otter_pubkey pub{};
  fixed_random rnd;
  otter_config cfg{};
  otter_device dev{};
  std::vector<char> scratch = std::vector<char>(4096);
  std::string req;

  vector_device() {
    const std::string pem = v["public_key"];
    EXPECT_EQ(otter_pubkey_from_pem(pem.data(), pem.size(), &pub), OTTER_OK);
    const std::string nonce = v["claims"]["nonce"];
    for (std::size_t i = 0; i < nonce.size(); i += 2)
      rnd.bytes.push_back(static_cast<std::uint8_t>(std::stoi(nonce.substr(i, 2), nullptr, 16)));
    cfg.device_id = "esp32-a1b2c3";
    cfg.model = "esp32-devkitc";
    cfg.version = "1.0.0";
    cfg.manifest_keys = &pub;
    cfg.manifest_key_count = 1;
    cfg.chunk_len_max = 1024;
    cfg.window_max = 8;
    cfg.random = fixed_random_fn;
    cfg.random_ctx = &rnd;
    EXPECT_EQ(otter_init(&dev, &cfg), OTTER_OK);
    char buf[512];
    std::size_t n = 0;
    EXPECT_EQ(otter_build_check(&dev, buf, sizeof buf, &n), OTTER_OK);
    auto j = json::parse(std::string(buf, n));
    EXPECT_EQ(j["nonce"], nonce);
    req = j["req"];
  }
  otter_err handle(const std::string& jws, std::int64_t now, otter_manifest* m = nullptr) {
    const auto offer = json{{"req", req}, {"update", true}, {"manifest", jws}}.dump();
    return otter_handle_offer(&dev, offer.data(), offer.size(), scratch.data(), scratch.size(), now,
                              m);
  }
};

TEST(device_core_manifest, shared_vector_verifies_and_its_claims_are_read) {
  vector_device d;
  otter_manifest m{};
  ASSERT_EQ(d.handle(d.v["jws"], 1795000001, &m), OTTER_OK);
  const auto& c = d.v["claims"];
  EXPECT_EQ(m.update, 1);
  EXPECT_EQ(std::string(m.version), c["version"]);
  EXPECT_EQ(std::string(m.from), c["from"]);
  EXPECT_EQ(std::string(m.model), c["model"]);
  EXPECT_EQ(std::string(m.rollout), c["rollout"]);
  EXPECT_EQ(m.size, c["size"].get<std::uint64_t>());
  EXPECT_EQ(std::string(m.sha256_hex), c["sha256"]);
  EXPECT_EQ(std::string(m.chunk_file), c["chunk"]["file"]);
  EXPECT_EQ(m.chunk_max, 4096u);
  EXPECT_EQ(m.chunk_window, 16u);
  EXPECT_EQ(m.exp, 1795003600);
  EXPECT_EQ(m.iat, 1795000000);
  EXPECT_EQ(m.downgrade, 0);
  EXPECT_EQ(m.has_image_sig, 0);
  EXPECT_EQ(otter_download_offset(&d.dev), 0u);
  EXPECT_TRUE(otter_download_need_request(&d.dev));
}

TEST(device_core_manifest, shared_vector_without_a_clock_is_accepted) {
  vector_device d;
  EXPECT_EQ(d.handle(d.v["jws"], 0), OTTER_OK);
}

TEST(device_core_manifest, shared_vector_expired) {
  vector_device d;
  EXPECT_EQ(d.handle(d.v["jws"], 1795003600), OTTER_E_EXPIRED);
  vector_device d2;
  EXPECT_EQ(d2.handle(d2.v["jws"], 1895000000), OTTER_E_EXPIRED);
}

TEST(device_core_manifest, shared_vector_tampered_signature_is_refused) {
  vector_device d;
  EXPECT_EQ(d.handle(d.v["tampered"], 1795000001), OTTER_E_SIGNATURE);
}

TEST(device_core_manifest, shared_vector_for_another_device_or_nonce_is_refused) {
  {
    vector_device d;
    d.cfg.device_id = "esp32-other";
    ASSERT_EQ(otter_init(&d.dev, &d.cfg), OTTER_OK);
    d.rnd.at = 0;
    char buf[512];
    std::size_t n;
    ASSERT_EQ(otter_build_check(&d.dev, buf, sizeof buf, &n), OTTER_OK);
    EXPECT_EQ(d.handle(d.v["jws"], 0), OTTER_E_SUB);
  }
  {
    vector_device d;
    d.rnd.bytes.assign(16, 0x11);
    d.rnd.at = 0;
    char buf[512];
    std::size_t n;
    ASSERT_EQ(otter_build_check(&d.dev, buf, sizeof buf, &n), OTTER_OK);
    d.req = json::parse(std::string(buf, n))["req"];
    EXPECT_EQ(d.handle(d.v["jws"], 0), OTTER_E_NONCE);
  }
}

TEST(device_core_manifest, signed_update_is_accepted) {
  device_fixture f;
  auto [req, nonce] = f.check();
  otter_manifest m{};
  const auto jws = sign_jws(f.key, default_header(f.key), f.update_claims(nonce, kSha, 5));
  ASSERT_EQ(f.handle(f.offer(req, true, jws), 1795000000, &m), OTTER_OK);
  EXPECT_EQ(std::string(m.version), "1.1.0");
  EXPECT_EQ(f.dev.have_manifest, 1);
}

TEST(device_core_manifest, signature_by_another_key_is_refused) {
  device_fixture f;
  auto [req, nonce] = f.check();
  auto other = crypto::ec_key::generate();
  // Another key under the pinned key's kid: the signature decides.
  const auto jws = sign_jws(other, default_header(f.key), f.update_claims(nonce, kSha, 5));
  EXPECT_EQ(f.handle(f.offer(req, true, jws)), OTTER_E_SIGNATURE);
}

TEST(device_core_manifest, claims_changed_after_signing_are_refused) {
  device_fixture f;
  auto [req, nonce] = f.check();
  auto jws = sign_jws(f.key, default_header(f.key), f.update_claims(nonce, kSha, 5));
  const auto dot1 = jws.find('.');
  const auto dot2 = jws.find('.', dot1 + 1);
  auto claims = f.update_claims(nonce, kSha, 5, "9.9.9");
  jws = jws.substr(0, dot1 + 1) + crypto::base64url_encode(claims.dump()) + jws.substr(dot2);
  EXPECT_EQ(f.handle(f.offer(req, true, jws)), OTTER_E_SIGNATURE);
}

TEST(device_core_manifest, header_checks) {
  struct header_case {
    const char* name;
    ordered_json header;
    otter_err want;
  };
  device_fixture f;
  const std::vector<header_case> cases = {
      {"unknown kid",
       {{"alg", "ES256"}, {"typ", "otter-manifest"}, {"kid", "0000000000000000"}},
       OTTER_E_KID},
      {"no kid tries the pinned keys", {{"alg", "ES256"}, {"typ", "otter-manifest"}}, OTTER_OK},
      {"alg none", {{"alg", "none"}, {"typ", "otter-manifest"}}, OTTER_E_HEADER},
      {"alg HS256", {{"alg", "HS256"}, {"typ", "otter-manifest"}}, OTTER_E_HEADER},
      {"no alg", {{"typ", "otter-manifest"}}, OTTER_E_HEADER},
      {"wrong typ", {{"alg", "ES256"}, {"typ", "JWT"}}, OTTER_E_HEADER},
      {"no typ", {{"alg", "ES256"}}, OTTER_E_HEADER},
      {"kid not a string", {{"alg", "ES256"}, {"typ", "otter-manifest"}, {"kid", 7}}, OTTER_E_KID},
  };
  for (const auto& c : cases) {
    auto [req, nonce] = f.check();
    const auto jws = sign_jws(f.key, c.header, f.update_claims(nonce, kSha, 5));
    EXPECT_EQ(f.handle(f.offer(req, true, jws)), c.want) << c.name;
  }
}

TEST(device_core_manifest, key_rotation_picks_the_key_by_kid) {
  device_fixture f;
  auto k2 = crypto::ec_key::generate();
  const otter_pubkey keys[2] = {f.pub, pubkey_of(k2)};
  f.cfg.manifest_keys = keys;
  f.cfg.manifest_key_count = 2;
  ASSERT_EQ(otter_init(&f.dev, &f.cfg), OTTER_OK);
  auto [req, nonce] = f.check();
  EXPECT_EQ(f.handle(f.offer(req, true,
                             sign_jws(k2, default_header(k2), f.update_claims(nonce, kSha, 5)))),
            OTTER_OK);
  auto [req2, nonce2] = f.check();
  EXPECT_EQ(f.handle(f.offer(req2, true,
                             sign_jws(k2, {{"alg", "ES256"}, {"typ", "otter-manifest"}},
                                      f.update_claims(nonce2, kSha, 5)))),
            OTTER_OK);
}

TEST(device_core_manifest, wrong_nonce_sub_model_and_expiry) {
  device_fixture f;
  struct claim_case {
    const char* name;
    const char* key;
    json value;
    otter_err want;
  };
  const std::vector<claim_case> cases = {
      {"nonce of another check", "nonce", "0123456789abcdef0123456789abcdef", OTTER_E_NONCE},
      {"nonce missing", "nonce", nullptr, OTTER_E_NONCE},
      {"another device", "sub", "esp32-other", OTTER_E_SUB},
      {"sub not a string", "sub", 5, OTTER_E_SUB},
      {"another model", "model", "esp8266", OTTER_E_MODEL},
      {"expired", "exp", 1700000000, OTTER_E_EXPIRED},
      {"exp not an integer", "exp", "soon", OTTER_E_FIELD},
      {"exp fractional", "exp", 1795003600.5, OTTER_E_FIELD},
      {"update not a boolean", "update", 1, OTTER_E_FIELD},
      {"size zero", "size", 0, OTTER_E_FIELD},
      {"size negative", "size", -5, OTTER_E_FIELD},
      {"sha256 upper case", "sha256", "ABCDEF", OTTER_E_FIELD},
      {"rollout missing", "rollout", nullptr, OTTER_E_FIELD},
      {"chunk missing", "chunk", nullptr, OTTER_E_FIELD},
      {"chunk file mismatch",
       "chunk",
       {{"file", "0000000000000000"}, {"max", 4096}, {"window", 16}},
       OTTER_E_FIELD},
      {"chunk max zero",
       "chunk",
       {{"file", kSha.substr(0, 16)}, {"max", 0}, {"window", 16}},
       OTTER_E_FIELD},
      {"image_sig not base64url", "image_sig", "!!!", OTTER_E_FIELD},
      {"image_sig too short", "image_sig", "AAAA", OTTER_E_FIELD},
      {"downgrade not a boolean", "downgrade", "yes", OTTER_E_FIELD},
      {"version not semver", "version", "1.2", OTTER_E_SEMVER},
      {"version too long", "version", "1.1.0-" + std::string(100, 'a'), OTTER_E_SEMVER},
  };
  for (const auto& c : cases) {
    auto [req, nonce] = f.check();
    auto claims = f.update_claims(nonce, kSha, 5);
    if (c.value.is_null())
      claims.erase(c.key);
    else
      claims[c.key] = c.value;
    const auto jws = sign_jws(f.key, default_header(f.key), claims);
    EXPECT_EQ(f.handle(f.offer(req, true, jws), 1795000000), c.want) << c.name;
  }
}

TEST(device_core_manifest, duplicate_claims_are_refused) {
  device_fixture f;
  auto [req, nonce] = f.check();
  auto claims = f.update_claims(nonce, kSha, 5);
  std::string text = claims.dump();
  text.insert(text.size() - 1, ",\"sub\":\"esp32-a1b2c3\"");
  const auto h = crypto::base64url_encode(default_header(f.key).dump());
  const auto input = h + "." + crypto::base64url_encode(text);
  const auto sig = f.key.sign(input);
  const auto jws = input + "." + crypto::base64url_encode(std::span<const std::uint8_t>(sig));
  EXPECT_EQ(f.handle(f.offer(req, true, jws)), OTTER_E_JSON);
}

TEST(device_core_manifest, downgrade_needs_downgrade_true) {
  device_fixture f("esp32-a1b2c3", "1.2.0");
  {
    auto [req, nonce] = f.check();
    auto claims = f.update_claims(nonce, kSha, 5, "1.1.0");
    EXPECT_EQ(f.handle(f.offer(req, true, sign_jws(f.key, default_header(f.key), claims))),
              OTTER_E_NOT_NEWER);
  }
  {
    auto [req, nonce] = f.check();
    auto claims = f.update_claims(nonce, kSha, 5, "1.1.0");
    claims["downgrade"] = false;
    EXPECT_EQ(f.handle(f.offer(req, true, sign_jws(f.key, default_header(f.key), claims))),
              OTTER_E_NOT_NEWER);
  }
  {
    auto [req, nonce] = f.check();
    auto claims = f.update_claims(nonce, kSha, 5, "1.1.0");
    claims["downgrade"] = true;
    otter_manifest m{};
    EXPECT_EQ(f.handle(f.offer(req, true, sign_jws(f.key, default_header(f.key), claims)), 0, &m),
              OTTER_OK);
    EXPECT_EQ(m.downgrade, 1);
  }
  {  // the same version is no update, downgrade or not
    auto [req, nonce] = f.check();
    auto claims = f.update_claims(nonce, kSha, 5, "1.2.0+build.5");
    claims["downgrade"] = true;
    EXPECT_EQ(f.handle(f.offer(req, true, sign_jws(f.key, default_header(f.key), claims))),
              OTTER_E_NOT_NEWER);
  }
  {  // precedence, not text: 1.10.0 > 1.9.2 > 1.2.0, rc below release
    auto [req, nonce] = f.check();
    EXPECT_EQ(f.handle(f.offer(req, true,
                               sign_jws(f.key, default_header(f.key),
                                        f.update_claims(nonce, kSha, 5, "1.10.0")))),
              OTTER_OK);
    auto [req2, nonce2] = f.check();
    EXPECT_EQ(f.handle(f.offer(req2, true,
                               sign_jws(f.key, default_header(f.key),
                                        f.update_claims(nonce2, kSha, 5, "1.2.0-rc.1")))),
              OTTER_E_NOT_NEWER);
  }
}

TEST(device_core_manifest, up_to_date_manifest_with_retry) {
  device_fixture f;
  auto [req, nonce] = f.check();
  ordered_json claims = {{"sub", "esp32-a1b2c3"}, {"nonce", nonce},  {"iat", 1795000000},
                         {"exp", 1795003600},     {"update", false}, {"retry_s", 3600}};
  otter_manifest m{};
  ASSERT_EQ(f.handle(f.offer(req, false, sign_jws(f.key, default_header(f.key), claims)), 0, &m),
            OTTER_OK);
  EXPECT_EQ(m.update, 0);
  EXPECT_EQ(m.retry_s, 3600);
  EXPECT_EQ(f.dev.dl.active, 0);
  // The unsigned "update" of the offer must agree with the signed one.
  auto [req2, nonce2] = f.check();
  claims["nonce"] = nonce2;
  EXPECT_EQ(f.handle(f.offer(req2, true, sign_jws(f.key, default_header(f.key), claims))),
            OTTER_E_FIELD);
  // A freeze is signed too: a forged "up to date" is refused.
  auto [req3, nonce3] = f.check();
  claims["nonce"] = nonce3;
  auto other = crypto::ec_key::generate();
  EXPECT_EQ(f.handle(f.offer(req3, false, sign_jws(other, default_header(f.key), claims))),
            OTTER_E_SIGNATURE);
  auto [req4, nonce4] = f.check();
  claims["nonce"] = nonce4;
  claims.erase("retry_s");
  ASSERT_EQ(f.handle(f.offer(req4, false, sign_jws(f.key, default_header(f.key), claims)), 0, &m),
            OTTER_OK);
  EXPECT_EQ(m.retry_s, -1);
}

TEST(device_core_manifest, answers_to_other_checks_and_replays_are_ignored) {
  device_fixture f;
  auto [req, nonce] = f.check();
  const auto offer =
      f.offer(req, true, sign_jws(f.key, default_header(f.key), f.update_claims(nonce, kSha, 5)));
  EXPECT_EQ(f.handle(f.offer("c-999", true, "a.b.c")), OTTER_E_REQ);
  EXPECT_EQ(f.dev.check_pending, 1);  // still waiting for its answer
  EXPECT_EQ(f.handle(offer), OTTER_OK);
  EXPECT_EQ(f.handle(offer), OTTER_E_REQ);  // consumed
  // The same manifest answering a newer check: its nonce is stale.
  auto [req2, nonce2] = f.check();
  auto replay = json::parse(offer);
  replay["req"] = req2;
  EXPECT_EQ(f.handle(replay.dump()), OTTER_E_NONCE);
}

TEST(device_core_manifest, oversized_offer_and_small_scratch) {
  device_fixture f;
  auto [req, nonce] = f.check();
  auto claims = f.update_claims(nonce, kSha, 5);
  claims["notes"] = std::string(17000, 'x');
  const auto big = f.offer(req, true, sign_jws(f.key, default_header(f.key), claims));
  EXPECT_EQ(f.handle(big), OTTER_E_TOO_LARGE);
  // Within 16 KiB but above this device's scratch.
  auto [req2, nonce2] = f.check();
  claims = f.update_claims(nonce2, kSha, 5);
  claims["notes"] = std::string(5000, 'x');
  const auto mid = f.offer(req2, true, sign_jws(f.key, default_header(f.key), claims));
  ASSERT_LT(mid.size(), 16384u);
  EXPECT_EQ(f.handle(mid), OTTER_E_TOO_LARGE);
  // The same with a scratch buffer big enough.
  auto [req3, nonce3] = f.check();
  claims["nonce"] = nonce3;
  f.scratch.resize(16384);
  EXPECT_EQ(f.handle(f.offer(req3, true, sign_jws(f.key, default_header(f.key), claims))),
            OTTER_OK);
}

TEST(device_core_manifest, malformed_offers_are_errors) {
  device_fixture f;
  auto [req, nonce] = f.check();
  const auto good = sign_jws(f.key, default_header(f.key), f.update_claims(nonce, kSha, 5));
  const auto dot1 = good.find('.');
  const auto dot2 = good.find('.', dot1 + 1);
  const std::vector<std::pair<std::string, otter_err>> offers = {
      {"", OTTER_E_JSON},
      {"{", OTTER_E_JSON},
      {"[]", OTTER_E_JSON},
      {"null", OTTER_E_JSON},
      {"{\"req\":\"" + req + "\"}", OTTER_E_FIELD},
      {"{\"req\":\"" + req + "\",\"update\":true}", OTTER_E_FIELD},
      {"{\"req\":\"" + req + "\",\"update\":true,\"manifest\":5}", OTTER_E_FIELD},
      {"{\"req\":\"" + req + "\",\"update\":\"yes\",\"manifest\":\"a.b.c\"}", OTTER_E_FIELD},
      {f.offer(req, true, ""), OTTER_E_JWS},
      {f.offer(req, true, "a.b"), OTTER_E_JWS},
      {f.offer(req, true, "a.b.c.d"), OTTER_E_JWS},
      {f.offer(req, true, ".b.c"), OTTER_E_JWS},
      {f.offer(req, true, good.substr(0, dot2 + 1)), OTTER_E_JWS},
      {f.offer(req, true, good.substr(0, dot2 + 10)), OTTER_E_JWS},
      {f.offer(req, true, "e30" + good.substr(dot1)), OTTER_E_HEADER},  // {}
      {f.offer(req, true, "!!!" + good.substr(dot1)), OTTER_E_JWS},
      {f.offer(req, true, "bm90IGpzb24" + good.substr(dot1)), OTTER_E_JWS},  // "not json"
      {f.offer(req, true, good + "="), OTTER_E_JWS},
  };
  for (const auto& [payload, want] : offers) {
    // Each answer consumes the check: send a fresh one with the same req for the next case.
    f.dev.check_pending = 1;
    EXPECT_EQ(f.handle(payload), want) << payload;
  }
}

TEST(device_core_manifest, truncated_and_mutated_offers_never_crash) {
  device_fixture f;
  auto [req, nonce] = f.check();
  const auto good =
      f.offer(req, true, sign_jws(f.key, default_header(f.key), f.update_claims(nonce, kSha, 5)));
  std::uint64_t state = 42;
  auto next = [&] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<std::uint32_t>(state >> 33);
  };
  int accepted = 0;
  for (std::size_t cut = 0; cut < good.size(); ++cut) {
    f.dev.check_pending = 1;
    std::string nonce_copy = nonce;
    std::memcpy(f.dev.nonce, nonce_copy.c_str(), nonce_copy.size() + 1);
    EXPECT_NE(f.handle(good.substr(0, cut)), OTTER_OK);
  }
  for (int i = 0; i < 3000; ++i) {
    std::string s = good;
    const int flips = 1 + next() % 4;
    for (int k = 0; k < flips; ++k) s[next() % s.size()] = static_cast<char>(next() & 0xff);
    f.dev.check_pending = 1;
    std::memcpy(f.dev.nonce, nonce.c_str(), nonce.size() + 1);
    accepted += f.handle(s) == OTTER_OK;
  }
  // A flip in a JSON key's whitespace-free text or an ignored part may still verify; most don't.
  EXPECT_LT(accepted, 300);
}

TEST(device_core_messages, check_message_round_trips) {
  device_fixture f;
  const otter_attr attrs[] = {
      {"site", "warehouse-3"}, {"quote\"back\\slash", "tab\tnl\nctl\x01 é ✓"}, {"empty", ""}};
  f.cfg.attrs = attrs;
  f.cfg.attr_count = 3;
  ASSERT_EQ(otter_init(&f.dev, &f.cfg), OTTER_OK);
  char buf[1024];
  std::size_t n = 0;
  ASSERT_EQ(otter_build_check(&f.dev, buf, sizeof buf, &n), OTTER_OK);
  EXPECT_EQ(std::strlen(buf), n);
  const auto j = json::parse(std::string(buf, n));
  EXPECT_EQ(j["req"], "c-1");
  EXPECT_EQ(j["model"], "esp32-devkitc");
  EXPECT_EQ(j["version"], "1.0.0");
  const std::string nonce = j["nonce"];
  EXPECT_EQ(nonce.size(), 32u);
  EXPECT_EQ(nonce.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(std::string(f.dev.nonce), nonce);
  EXPECT_EQ(j["attrs"], (json{{"site", "warehouse-3"},
                              {"quote\"back\\slash", "tab\tnl\nctl\x01 é ✓"},
                              {"empty", ""}}));
  // A fresh nonce per check.
  ASSERT_EQ(otter_build_check(&f.dev, buf, sizeof buf, &n), OTTER_OK);
  const auto j2 = json::parse(std::string(buf, n));
  EXPECT_NE(j2["nonce"], nonce);
  EXPECT_EQ(j2["req"], "c-2");
}

TEST(device_core_messages, builders_report_a_small_buffer) {
  device_fixture f;
  char buf[512];
  std::size_t full = 0;
  ASSERT_EQ(otter_build_check(&f.dev, buf, sizeof buf, &full), OTTER_OK);
  for (std::size_t cap = 1; cap <= full; ++cap) {
    std::vector<char> small(cap);
    std::size_t n = 0;
    EXPECT_EQ(otter_build_check(&f.dev, small.data(), cap, &n), OTTER_E_NOSPACE) << cap;
  }
  otter_status st{OTTER_STATE_FAILED, 10, "flash write failed", "1.1.0", "17"};
  ASSERT_EQ(otter_build_status(&f.dev, &st, buf, sizeof buf, &full), OTTER_OK);
  for (std::size_t cap = 1; cap <= full; ++cap) {
    std::vector<char> small(cap);
    EXPECT_EQ(otter_build_status(&f.dev, &st, small.data(), cap, nullptr), OTTER_E_NOSPACE);
  }
  EXPECT_EQ(otter_build_check(&f.dev, nullptr, 0, nullptr), OTTER_E_ARG);
  // A failed build leaves no check outstanding with an unsent nonce.
  f.dev.check_pending = 0;
  char tiny[8];
  EXPECT_EQ(otter_build_check(&f.dev, tiny, sizeof tiny, nullptr), OTTER_E_NOSPACE);
  EXPECT_EQ(f.dev.check_pending, 0);
}

TEST(device_core_messages, status_messages_round_trip) {
  device_fixture f;
  char buf[1024];
  std::size_t n = 0;
  const otter_state states[] = {
      OTTER_STATE_DOWNLOADING, OTTER_STATE_VERIFYING, OTTER_STATE_INSTALLING, OTTER_STATE_SUCCESS,
      OTTER_STATE_FAILED,      OTTER_STATE_REJECTED,  OTTER_STATE_ROLLED_BACK};
  const char* names[] = {"downloading", "verifying", "installing", "success",
                         "failed",      "rejected",  "rolled_back"};
  for (int i = 0; i < 7; ++i) {
    otter_status st{states[i], i == 0 ? 42 : -1, i >= 4 ? "why \"quoted\"\n" : nullptr, "1.1.0",
                    "17"};
    ASSERT_EQ(otter_build_status(&f.dev, &st, buf, sizeof buf, &n), OTTER_OK) << names[i];
    const auto j = json::parse(std::string(buf, n));
    EXPECT_EQ(j["state"], names[i]);
    EXPECT_EQ(j["version"], "1.1.0");
    EXPECT_EQ(j["rollout"], "17");
    EXPECT_EQ(j.contains("progress"), i == 0);
    if (i == 0) {
      EXPECT_EQ(j["progress"], 42);
    }
    if (i >= 4) {
      EXPECT_EQ(j["error"], "why \"quoted\"\n");
    }
    EXPECT_EQ(j["req"].get<std::string>().rfind("s-", 0), 0u);
  }
  // error is required with failed, rejected and rolled_back.
  for (auto s : {OTTER_STATE_FAILED, OTTER_STATE_REJECTED, OTTER_STATE_ROLLED_BACK}) {
    otter_status st{s, -1, nullptr, nullptr, nullptr};
    EXPECT_EQ(otter_build_status(&f.dev, &st, buf, sizeof buf, &n), OTTER_E_ARG);
    st.error = "";
    EXPECT_EQ(otter_build_status(&f.dev, &st, buf, sizeof buf, &n), OTTER_E_ARG);
  }
  otter_status bad{OTTER_STATE_DOWNLOADING, 101, nullptr, nullptr, nullptr};
  EXPECT_EQ(otter_build_status(&f.dev, &bad, buf, sizeof buf, &n), OTTER_E_ARG);
  bad.progress = 0;
  bad.version = "not-semver";
  EXPECT_EQ(otter_build_status(&f.dev, &bad, buf, sizeof buf, &n), OTTER_E_ARG);
  bad.version = nullptr;
  bad.error = "\xff\xfe";
  EXPECT_EQ(otter_build_status(&f.dev, &bad, buf, sizeof buf, &n), OTTER_E_ARG);
  // Defaults: the running version, no rollout.
  otter_status plain{OTTER_STATE_SUCCESS, -1, nullptr, nullptr, nullptr};
  ASSERT_EQ(otter_build_status(&f.dev, &plain, buf, sizeof buf, &n), OTTER_OK);
  const auto j = json::parse(std::string(buf, n));
  EXPECT_EQ(j["version"], "1.0.0");
  EXPECT_FALSE(j.contains("rollout"));
  EXPECT_FALSE(j.contains("error"));
}

TEST(device_core_messages, status_defaults_to_the_accepted_manifest) {
  device_fixture f;
  auto [req, nonce] = f.check();
  ASSERT_EQ(
      f.handle(f.offer(req, true,
                       sign_jws(f.key, default_header(f.key), f.update_claims(nonce, kSha, 5)))),
      OTTER_OK);
  char buf[512];
  std::size_t n = 0;
  otter_status st{OTTER_STATE_DOWNLOADING, 0, nullptr, nullptr, nullptr};
  ASSERT_EQ(otter_build_status(&f.dev, &st, buf, sizeof buf, &n), OTTER_OK);
  const auto j = json::parse(std::string(buf, n));
  EXPECT_EQ(j["version"], "1.1.0");
  EXPECT_EQ(j["rollout"], "17");
  st.rollout = "";
  ASSERT_EQ(otter_build_status(&f.dev, &st, buf, sizeof buf, &n), OTTER_OK);
  EXPECT_FALSE(json::parse(std::string(buf, n)).contains("rollout"));
}

TEST(device_core_messages, rejected_names_the_refused_offer_when_it_was_signed_for_this_check) {
  // The service counts a "rejected" report in a rollout by its rollout (or its version): the
  // report must name the offer refused, not the running version or an older accepted manifest.
  device_fixture f;
  auto [req0, nonce0] = f.check();
  ASSERT_EQ(f.handle(f.offer(
                req0, true,
                sign_jws(f.key, default_header(f.key), f.update_claims(nonce0, kSha, 5, "1.0.5")))),
            OTTER_OK);
  auto rejected = [&]() {
    char buf[512];
    std::size_t n = 0;
    otter_status st{OTTER_STATE_REJECTED, -1, "refused", nullptr, nullptr};
    EXPECT_EQ(otter_build_status(&f.dev, &st, buf, sizeof buf, &n), OTTER_OK);
    return json::parse(std::string(buf, n));
  };

  // Signed for this check, refused by a later rule (another model): its version and rollout.
  auto [req, nonce] = f.check();
  auto claims = f.update_claims(nonce, kSha, 5, "2.0.0");
  claims["model"] = "esp8266";
  claims["rollout"] = "42";
  ASSERT_EQ(f.handle(f.offer(req, true, sign_jws(f.key, default_header(f.key), claims))),
            OTTER_E_MODEL);
  auto j = rejected();
  EXPECT_EQ(j["version"], "2.0.0");
  EXPECT_EQ(j["rollout"], "42");

  // Not for this check (another nonce): nothing it says is trusted, the running version.
  auto [req2, nonce2] = f.check();
  (void)nonce2;
  ASSERT_EQ(f.handle(f.offer(
                req2, true,
                sign_jws(f.key, default_header(f.key),
                         f.update_claims("0123456789abcdef0123456789abcdef", kSha, 5, "3.0.0")))),
            OTTER_E_NONCE);
  j = rejected();
  EXPECT_EQ(j["version"], "1.0.0");
  EXPECT_FALSE(j.contains("rollout"));

  // A bad signature: the same.
  auto [req3, nonce3] = f.check();
  crypto::ec_key other = crypto::ec_key::generate();
  ASSERT_EQ(f.handle(f.offer(
                req3, true,
                sign_jws(other, default_header(f.key), f.update_claims(nonce3, kSha, 5, "3.0.0")))),
            OTTER_E_SIGNATURE);
  EXPECT_EQ(rejected()["version"], "1.0.0");

  // Other states still default to the accepted manifest.
  char buf[512];
  std::size_t n = 0;
  otter_status st{OTTER_STATE_DOWNLOADING, 0, nullptr, nullptr, nullptr};
  ASSERT_EQ(otter_build_status(&f.dev, &st, buf, sizeof buf, &n), OTTER_OK);
  EXPECT_EQ(json::parse(std::string(buf, n))["version"], "1.0.5");
}

TEST(device_core_messages, long_errors_are_cut_on_a_character_boundary) {
  device_fixture f;
  std::string err;
  while (err.size() < 300) err += "é";  // two bytes each
  err = "x" + err;                      // the cut at 256 falls inside a character
  otter_status st{OTTER_STATE_FAILED, -1, err.c_str(), "1.1.0", nullptr};
  char buf[1024];
  std::size_t n = 0;
  ASSERT_EQ(otter_build_status(&f.dev, &st, buf, sizeof buf, &n), OTTER_OK);
  const auto j = json::parse(std::string(buf, n));  // throws on broken UTF-8
  const std::string got = j["error"];
  EXPECT_LE(got.size(), 256u);
  EXPECT_GE(got.size(), 255u);
  EXPECT_EQ(err.rfind(got, 0), 0u);
}

TEST(device_core_messages, init_validates_the_configuration) {
  device_fixture f;
  otter_device d{};
  auto cfg = f.cfg;
  EXPECT_EQ(otter_init(&d, &cfg), OTTER_OK);
  for (const char* bad_id : {"", "has space", "slash/", "plus+", "hash#",
                             "0123456789012345678901234567890123456789012345678901234567890123X"}) {
    cfg = f.cfg;
    cfg.device_id = bad_id;
    EXPECT_EQ(otter_init(&d, &cfg), OTTER_E_ARG) << bad_id;
  }
  cfg = f.cfg;
  cfg.version = "1.0";
  EXPECT_EQ(otter_init(&d, &cfg), OTTER_E_ARG);
  cfg = f.cfg;
  cfg.manifest_key_count = 0;
  EXPECT_EQ(otter_init(&d, &cfg), OTTER_E_ARG);
  cfg = f.cfg;
  cfg.chunk_len_max = 0;
  EXPECT_EQ(otter_init(&d, &cfg), OTTER_E_ARG);
  cfg = f.cfg;
  cfg.root = "a/+/b";
  EXPECT_EQ(otter_init(&d, &cfg), OTTER_E_ARG);
  const otter_attr long_key[] = {{"0123456789012345678901234567890123", "v"}};
  cfg = f.cfg;
  cfg.attrs = long_key;
  cfg.attr_count = 1;
  EXPECT_EQ(otter_init(&d, &cfg), OTTER_E_ARG);
}

TEST(device_core_messages, topics_and_classification) {
  device_fixture f;
  char buf[256];
  ASSERT_EQ(otter_topic(&f.dev, OTTER_TOPIC_CHECK, buf, sizeof buf), OTTER_OK);
  EXPECT_STREQ(buf, "ota/v1/dev/esp32-a1b2c3/up/check");
  ASSERT_EQ(otter_topic(&f.dev, OTTER_TOPIC_STATUS, buf, sizeof buf), OTTER_OK);
  EXPECT_STREQ(buf, "ota/v1/dev/esp32-a1b2c3/up/status");
  ASSERT_EQ(otter_topic(&f.dev, OTTER_TOPIC_CHUNK, buf, sizeof buf), OTTER_OK);
  EXPECT_STREQ(buf, "ota/v1/dev/esp32-a1b2c3/up/chunk");
  ASSERT_EQ(otter_topic(&f.dev, OTTER_TOPIC_DOWN_FILTER, buf, sizeof buf), OTTER_OK);
  EXPECT_STREQ(buf, "ota/v1/dev/esp32-a1b2c3/down/#");
  EXPECT_EQ(otter_topic(&f.dev, OTTER_TOPIC_CHECK, buf, 10), OTTER_E_NOSPACE);

  otter_down_kind kind;
  std::uint64_t off = 0;
  auto classify = [&](const std::string& t) {
    return otter_classify_topic(&f.dev, t.data(), t.size(), &kind, &off);
  };
  EXPECT_EQ(classify("ota/v1/dev/esp32-a1b2c3/down/offer"), OTTER_OK);
  EXPECT_EQ(kind, OTTER_DOWN_OFFER);
  EXPECT_EQ(classify("ota/v1/dev/esp32-a1b2c3/down/error"), OTTER_OK);
  EXPECT_EQ(kind, OTTER_DOWN_ERROR);
  EXPECT_EQ(classify("ota/v1/dev/esp32-a1b2c3/down/offerx"), OTTER_E_TOPIC);
  EXPECT_EQ(classify("ota/v1/dev/esp32-a1b2c/down/offer"), OTTER_E_TOPIC);
  EXPECT_EQ(classify("ota/v1/dev/esp32-a1b2c3x/down/offer"), OTTER_E_TOPIC);
  EXPECT_EQ(classify("ota/v2/dev/esp32-a1b2c3/down/offer"), OTTER_E_TOPIC);
  // No download yet: any chunk is of a file not being downloaded.
  EXPECT_EQ(classify("ota/v1/dev/esp32-a1b2c3/down/chunk/" + kSha.substr(0, 16) + "/0"),
            OTTER_E_CHUNK_FILE);
  auto [req, nonce] = f.check();
  ASSERT_EQ(
      f.handle(f.offer(req, true,
                       sign_jws(f.key, default_header(f.key), f.update_claims(nonce, kSha, 5)))),
      OTTER_OK);
  EXPECT_EQ(classify("ota/v1/dev/esp32-a1b2c3/down/chunk/" + kSha.substr(0, 16) + "/4096"),
            OTTER_OK);
  EXPECT_EQ(kind, OTTER_DOWN_CHUNK);
  EXPECT_EQ(off, 4096u);
  EXPECT_EQ(classify("ota/v1/dev/esp32-a1b2c3/down/chunk/0000000000000000/0"), OTTER_E_CHUNK_FILE);
  EXPECT_EQ(classify("ota/v1/dev/esp32-a1b2c3/down/chunk/" + kSha.substr(0, 16) + "/"),
            OTTER_E_TOPIC);
  EXPECT_EQ(classify("ota/v1/dev/esp32-a1b2c3/down/chunk/" + kSha.substr(0, 16) + "/01"),
            OTTER_E_TOPIC);
  EXPECT_EQ(classify("ota/v1/dev/esp32-a1b2c3/down/chunk/" + kSha.substr(0, 16) +
                     "/99999999999999999999999"),
            OTTER_E_TOPIC);
  EXPECT_EQ(classify("ota/v1/dev/esp32-a1b2c3/down/chunk/" + kSha.substr(0, 16) + "/-1"),
            OTTER_E_TOPIC);
}

TEST(device_core_messages, error_messages_are_read) {
  char req[16], code[16], msg[8];
  const std::string e = R"({"req":"k-9","code":"range","message":"offset past the end"})";
  ASSERT_EQ(
      otter_parse_error(e.data(), e.size(), req, sizeof req, code, sizeof code, msg, sizeof msg),
      OTTER_OK);
  EXPECT_STREQ(req, "k-9");
  EXPECT_STREQ(code, "range");
  EXPECT_STREQ(msg, "offset ");  // cut to the buffer
  const std::string bad = R"({"req":"k-9"})";
  EXPECT_EQ(otter_parse_error(bad.data(), bad.size(), req, sizeof req, code, sizeof code, msg,
                              sizeof msg),
            OTTER_E_FIELD);
  EXPECT_EQ(otter_parse_error("{", 1, req, sizeof req, code, sizeof code, msg, sizeof msg),
            OTTER_E_JSON);
}

TEST(device_core_semver, shared_vectors) {
  const auto v = shared_vector("semver.json");
  const auto& asc = v["ascending"];
  for (std::size_t i = 0; i < asc.size(); ++i) {
    for (std::size_t j = 0; j < asc.size(); ++j) {
      const std::string a = asc[i], b = asc[j];
      int order = 99;
      ASSERT_EQ(otter_semver_compare(a.c_str(), b.c_str(), &order), OTTER_OK) << a << " " << b;
      EXPECT_EQ(order < 0, i < j) << a << " vs " << b;
      EXPECT_EQ(order == 0, i == j) << a << " vs " << b;
      EXPECT_EQ(order > 0, i > j) << a << " vs " << b;
    }
  }
  for (const auto& pair : v["equal"]) {
    const std::string a = pair[0], b = pair[1];
    int order = 99;
    ASSERT_EQ(otter_semver_compare(a.c_str(), b.c_str(), &order), OTTER_OK);
    EXPECT_EQ(order, 0) << a << " " << b;
  }
  for (const auto& bad : v["invalid"]) {
    const std::string s = bad;
    EXPECT_EQ(otter_semver_valid(s.data(), s.size()), OTTER_E_SEMVER) << s;
    int order = 0;
    EXPECT_EQ(otter_semver_compare(s.c_str(), "1.0.0", &order), OTTER_E_SEMVER) << s;
  }
}

TEST(device_core_semver, more_precedence_rules) {
  auto cmp = [](const char* a, const char* b) {
    int order = 99;
    EXPECT_EQ(otter_semver_compare(a, b, &order), OTTER_OK) << a << " " << b;
    return order;
  };
  EXPECT_LT(cmp("1.0.9", "1.0.99999999999999999999999"), 0);  // no overflow
  EXPECT_GT(cmp("1.0.0-alpha.10", "1.0.0-alpha.9"), 0);
  EXPECT_LT(cmp("1.0.0-1", "1.0.0-a"), 0);  // numeric below alphanumeric
  EXPECT_LT(cmp("1.0.0-a", "1.0.0-a.0"), 0);
  EXPECT_LT(cmp("1.0.0-Z", "1.0.0-a"), 0);      // ASCII order
  EXPECT_GT(cmp("1.0.0-a-b", "1.0.0-a.b"), 0);  // "a" < "a-b"
  EXPECT_EQ(cmp("1.0.0+a.b", "1.0.0+c"), 0);
  EXPECT_LT(cmp("1.0.0-rc.1+b.01", "1.0.0"), 0);
  EXPECT_EQ(otter_semver_valid("1.0.0-0a", 8), OTTER_OK);
  EXPECT_EQ(otter_semver_valid("1.0.0+001", 9), OTTER_OK);  // build may have leading zeros
  EXPECT_EQ(otter_semver_valid("1.0.0-a.", 8), OTTER_E_SEMVER);
  EXPECT_EQ(otter_semver_valid("1.0.0-a_b", 9), OTTER_E_SEMVER);
  EXPECT_EQ(otter_semver_valid("1.0.0\0", 6), OTTER_E_SEMVER);
}

TEST(device_core_semver, same_release_ignores_build_metadata) {
  EXPECT_TRUE(otter_same_release("1.1.0+b7", "1.1.0"));
  EXPECT_TRUE(otter_same_release("1.1.0", "1.1.0"));
  EXPECT_FALSE(otter_same_release("1.1.0", "1.1.1"));
  EXPECT_FALSE(otter_same_release("1.1.0-rc.1", "1.1.0"));
  EXPECT_TRUE(otter_same_release("v1", "v1"));  // not versions: byte-equal
  EXPECT_FALSE(otter_same_release("v1", "v1+x"));
  EXPECT_FALSE(otter_same_release(nullptr, "1.0.0"));
}

TEST(device_core_retry, backoff_doubles_to_the_cap_with_a_quarter_of_jitter) {
  device_fixture f;
  fixed_random zeros{std::vector<std::uint8_t>(64, 0x00)};
  f.dev.random = fixed_random_fn;
  f.dev.random_ctx = &zeros;
  EXPECT_EQ(otter_backoff_ms(&f.dev, 60000, 0, 3600000), 60000u);
  EXPECT_EQ(otter_backoff_ms(&f.dev, 60000, 1, 3600000), 120000u);
  EXPECT_EQ(otter_backoff_ms(&f.dev, 60000, 5, 3600000), 1920000u);
  EXPECT_EQ(otter_backoff_ms(&f.dev, 60000, 6, 3600000), 3600000u);   // capped
  EXPECT_EQ(otter_backoff_ms(&f.dev, 60000, 32, 3600000), 3600000u);  // no overflow
  EXPECT_EQ(otter_backoff_ms(&f.dev, 4000000, 0, 3600000), 3600000u);
  EXPECT_EQ(otter_backoff_ms(&f.dev, 0xC0000000u, 3, 0xF0000000u), 0xF0000000u);

  fixed_random ones{std::vector<std::uint8_t>(64, 0xFF)};  // the largest jitter: d / 4
  f.dev.random_ctx = &ones;
  EXPECT_EQ(otter_backoff_ms(&f.dev, 10000, 0, 300000), 10000u + 0xFFFFFFFFu % 2501u);
  EXPECT_LE(otter_backoff_ms(&f.dev, 10000, 2, 300000), 40000u + 10000u);

  fixed_random empty{};  // the random source fails: no jitter
  f.dev.random_ctx = &empty;
  EXPECT_EQ(otter_backoff_ms(&f.dev, 10000, 2, 300000), 40000u);
  EXPECT_EQ(otter_backoff_ms(nullptr, 10000, 1, 300000), 20000u);
}

TEST(device_core_base64url, decodes_and_refuses) {
  std::uint8_t out[8];
  std::size_t n = 0;
  ASSERT_EQ(otter_base64url_decode("aGk", 3, out, sizeof out, &n), OTTER_OK);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(out), n), "hi");
  ASSERT_EQ(otter_base64url_decode("-_8", 3, out, sizeof out, &n), OTTER_OK);
  EXPECT_EQ(n, 2u);
  EXPECT_EQ(out[0], 0xfb);
  EXPECT_EQ(out[1], 0xff);
  ASSERT_EQ(otter_base64url_decode("", 0, out, sizeof out, &n), OTTER_OK);
  EXPECT_EQ(n, 0u);
  EXPECT_EQ(otter_base64url_decode("aGk=", 4, out, sizeof out, &n), OTTER_E_FIELD);
  EXPECT_EQ(otter_base64url_decode("a+/a", 4, out, sizeof out, &n), OTTER_E_FIELD);
  EXPECT_EQ(otter_base64url_decode("a", 1, out, sizeof out, &n), OTTER_E_FIELD);
  EXPECT_EQ(otter_base64url_decode("aGl", 3, out, sizeof out, &n), OTTER_E_FIELD);  // stray bits
  EXPECT_EQ(otter_base64url_decode("aGVsbG8gd29ybGQ", 15, out, sizeof out, &n), OTTER_E_TOO_LARGE);
}

}  // namespace
}  // namespace otter::device_test
