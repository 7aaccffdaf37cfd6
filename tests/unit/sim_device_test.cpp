// otter-sim's device side without a broker: which manifests a device accepts, how it
// reassembles an image from chunks that arrive out of order, twice or not at all, and the
// state machine from check to success (or failure) with time passed in.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "crypto/ec_key.hpp"
#include "crypto/hash.hpp"
#include "crypto/jws.hpp"
#include "protocol/semver.hpp"
#include "protocol/topics.hpp"
#include "sim/device.hpp"
#include "sim/image_download.hpp"
#include "sim/manifest_check.hpp"
#include "support/files.hpp"

namespace otter::sim {
namespace {

using otter::test::read_file;

using namespace std::chrono_literals;
using nlohmann::json;
using nlohmann::ordered_json;

constexpr std::int64_t kNow = 1795000100;
const std::string kNonce = "9f86d081884c7d659a2feaa0c55ad015";

protocol::semver v(const std::string& text) {
  return protocol::parse_semver(text).value();
}

std::string image_bytes(std::size_t n) {
  const auto r = crypto::random_bytes(n);
  return std::string(r.begin(), r.end());
}

ordered_json update_claims(const std::string& sub, const std::string& nonce,
                           const std::string& version, const std::string& image,
                           std::uint32_t chunk_max = 1024, std::uint32_t window = 4) {
  const auto sha = crypto::sha256_hex(image);
  ordered_json c;
  c["sub"] = sub;
  c["update"] = true;
  c["model"] = "esp32-devkitc";
  c["version"] = version;
  c["from"] = "1.0.0";
  c["size"] = image.size();
  c["sha256"] = sha;
  c["nonce"] = nonce;
  c["iat"] = kNow - 100;
  c["exp"] = kNow + 3500;
  c["rollout"] = "7";
  c["chunk"] = {{"file", sha.substr(0, 16)}, {"max", chunk_max}, {"window", window}};
  return c;
}

// A compact JWS with any header, correctly signed: to reach the checks after the signature.
std::string sign_with_header(const crypto::ec_key& key, const json& header,
                             const ordered_json& claims) {
  std::string input =
      crypto::base64url_encode(header.dump()) + "." + crypto::base64url_encode(claims.dump());
  const auto sig = key.sign(input);
  return input + "." + crypto::base64url_encode(sig);
}

class manifest_check : public ::testing::Test {
 protected:
  manifest_verdict check(const std::string& compact, const std::string& running = "1.0.0",
                         std::int64_t now = kNow) {
    const auto r = v(running);
    return check_manifest(pub_, compact, {"dev-1", kNonce, "esp32-devkitc", r, now});
  }
  std::string sign(const ordered_json& claims) { return crypto::jws_sign(key_, claims); }

  crypto::ec_key key_ = crypto::ec_key::generate();
  crypto::ec_key pub_ = crypto::ec_key::from_public_pem(key_.public_pem()).value();
  std::string image_ = image_bytes(5000);
};

TEST_F(manifest_check, accepts_a_valid_update) {
  const auto verdict = check(sign(update_claims("dev-1", kNonce, "1.1.0", image_)));
  ASSERT_TRUE(verdict.accepted()) << verdict.refusal;
  EXPECT_TRUE(verdict.signature_ok);
  EXPECT_TRUE(verdict.claims.update);
  EXPECT_EQ(verdict.claims.version, "1.1.0");
  EXPECT_EQ(verdict.claims.size, 5000u);
  EXPECT_EQ(verdict.claims.rollout, "7");
  EXPECT_EQ(verdict.claims.chunk_max, 1024u);
  EXPECT_EQ(verdict.claims.chunk_window, 4u);
}

TEST_F(manifest_check, accepts_the_shared_signed_vector_and_refuses_its_tampered_twin) {
  const auto vec =
      json::parse(read_file(std::filesystem::path(OTTER_SHARED_DIR) / "vectors" / "manifest.json"));
  const auto pinned = crypto::ec_key::from_public_pem(vec["public_key"].get<std::string>()).value();
  const auto running = v("1.0.0");
  const auto nonce = vec["claims"]["nonce"].get<std::string>();
  const manifest_expectations want{"esp32-a1b2c3", nonce, "esp32-devkitc", running, 1795000000};
  const auto good = check_manifest(pinned, vec["jws"].get<std::string>(), want);
  EXPECT_TRUE(good.accepted()) << good.refusal;
  const auto bad = check_manifest(pinned, vec["tampered"].get<std::string>(), want);
  EXPECT_FALSE(bad.accepted());
  EXPECT_FALSE(bad.signature_ok);
}

TEST_F(manifest_check, refuses_a_bad_signature) {
  const auto other = crypto::ec_key::generate();
  const auto verdict =
      check(crypto::jws_sign(other, update_claims("dev-1", kNonce, "1.1.0", image_)));
  EXPECT_FALSE(verdict.accepted());
  EXPECT_FALSE(verdict.signature_ok);
  EXPECT_NE(verdict.refusal.find("signature"), std::string::npos) << verdict.refusal;
  // What was claimed is still readable, to word the report.
  EXPECT_EQ(verdict.claims.version, "1.1.0");

  auto compact = sign(update_claims("dev-1", kNonce, "1.1.0", image_));
  compact[compact.size() - 3] = compact[compact.size() - 3] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(check(compact).accepted());
  EXPECT_FALSE(check("not.a-jws").accepted());
}

TEST_F(manifest_check, refuses_a_kid_that_is_not_the_pinned_keys) {
  const json header = {{"alg", "ES256"}, {"typ", "otter-manifest"}, {"kid", "0000000000000000"}};
  const auto verdict =
      check(sign_with_header(key_, header, update_claims("dev-1", kNonce, "1.1.0", image_)));
  EXPECT_FALSE(verdict.accepted());
  EXPECT_TRUE(verdict.signature_ok);
  EXPECT_NE(verdict.refusal.find("kid"), std::string::npos) << verdict.refusal;
}

TEST_F(manifest_check, refuses_another_devices_manifest) {
  const auto verdict = check(sign(update_claims("dev-2", kNonce, "1.1.0", image_)));
  EXPECT_FALSE(verdict.accepted());
  EXPECT_NE(verdict.refusal.find("sub"), std::string::npos) << verdict.refusal;
}

TEST_F(manifest_check, refuses_another_checks_nonce) {
  const auto verdict =
      check(sign(update_claims("dev-1", "00112233445566778899aabbccddeeff", "1.1.0", image_)));
  EXPECT_FALSE(verdict.accepted());
  EXPECT_NE(verdict.refusal.find("nonce"), std::string::npos) << verdict.refusal;
}

TEST_F(manifest_check, refuses_an_expired_manifest) {
  auto c = update_claims("dev-1", kNonce, "1.1.0", image_);
  c["exp"] = kNow - 1;
  const auto verdict = check(sign(c));
  EXPECT_FALSE(verdict.accepted());
  EXPECT_NE(verdict.refusal.find("expired"), std::string::npos) << verdict.refusal;
  c["exp"] = kNow;  // "has not passed": the last second still counts
  EXPECT_TRUE(check(sign(c)).accepted());
}

TEST_F(manifest_check, refuses_a_downgrade_unless_the_manifest_says_so) {
  auto c = update_claims("dev-1", kNonce, "1.1.0", image_);
  auto verdict = check(sign(c), "1.2.0");
  EXPECT_FALSE(verdict.accepted());
  EXPECT_NE(verdict.refusal.find("downgrade"), std::string::npos) << verdict.refusal;
  c["downgrade"] = true;
  verdict = check(sign(c), "1.2.0");
  EXPECT_TRUE(verdict.accepted()) << verdict.refusal;
  EXPECT_TRUE(verdict.claims.downgrade);
}

TEST_F(manifest_check, compares_by_semver_precedence) {
  // 1.10.0 > 1.9.2 and a release > its pre-release; the same release is no update.
  EXPECT_TRUE(check(sign(update_claims("dev-1", kNonce, "1.10.0", image_)), "1.9.2").accepted());
  EXPECT_TRUE(
      check(sign(update_claims("dev-1", kNonce, "1.0.0", image_)), "1.0.0-rc.1").accepted());
  EXPECT_FALSE(check(sign(update_claims("dev-1", kNonce, "1.0.0+b7", image_)), "1.0.0").accepted());
}

TEST_F(manifest_check, refuses_malformed_update_claims) {
  auto c = update_claims("dev-1", kNonce, "1.1.0", image_);
  c["model"] = "esp8266";
  EXPECT_NE(check(sign(c)).refusal.find("model"), std::string::npos);
  c = update_claims("dev-1", kNonce, "1.1.0", image_);
  c["chunk"]["file"] = "ffffffffffffffff";
  EXPECT_NE(check(sign(c)).refusal.find("chunk.file"), std::string::npos);
  c = update_claims("dev-1", kNonce, "1.1.0", image_);
  c.erase("sha256");
  EXPECT_NE(check(sign(c)).refusal.find("sha256"), std::string::npos);
  c = update_claims("dev-1", kNonce, "v1.1", image_);
  EXPECT_NE(check(sign(c)).refusal.find("semantic"), std::string::npos);
}

TEST_F(manifest_check, checks_a_no_update_answer_too) {
  ordered_json c = {{"sub", "dev-1"}, {"update", false},  {"nonce", kNonce},
                    {"iat", kNow},    {"exp", kNow + 60}, {"retry_s", 600}};
  auto verdict = check(sign(c));
  ASSERT_TRUE(verdict.accepted()) << verdict.refusal;
  EXPECT_FALSE(verdict.claims.update);
  EXPECT_EQ(verdict.claims.retry_s, 600);
  c["nonce"] = "ffffffffffffffffffffffffffffffff";  // a replayed "up to date": a freeze
  EXPECT_FALSE(check(sign(c)).accepted());
}

// ---------------------------------------------------------------- reassembly

std::string slice(const std::string& s, std::size_t off, std::size_t len) {
  return s.substr(off, std::min(len, s.size() - off));
}

TEST(image_download, in_order_gives_the_images_digest) {
  const auto img = image_bytes(10000);
  image_download d(img.size(), 1024);
  EXPECT_EQ(d.chunks_left(), 10u);
  for (std::size_t off = 0; off < img.size(); off += 1024)
    EXPECT_EQ(d.add(off, slice(img, off, 1024)), image_download::outcome::stored);
  ASSERT_TRUE(d.complete());
  EXPECT_EQ(d.chunks_left(), 0u);
  EXPECT_EQ(crypto::to_hex(d.finish()), crypto::sha256_hex(img));
}

TEST(image_download, gaps_and_duplicates_end_in_the_same_image) {
  const auto img = image_bytes(10 * 1024 + 7);  // 11 chunks, the last one 7 bytes
  image_download d(img.size(), 1024);
  using o = image_download::outcome;
  // A window of 0..3 where chunk 1 is lost and chunk 0 comes twice.
  EXPECT_EQ(d.add(0, slice(img, 0, 1024)), o::stored);
  EXPECT_EQ(d.add(2048, slice(img, 2048, 1024)), o::stored);
  EXPECT_EQ(d.add(0, slice(img, 0, 1024)), o::duplicate);
  EXPECT_EQ(d.add(3072, slice(img, 3072, 1024)), o::stored);
  EXPECT_EQ(d.add(2048, slice(img, 2048, 1024)), o::duplicate);  // held, and again
  EXPECT_EQ(d.first_missing(), 1024u);  // the gap: where the re-request starts
  EXPECT_EQ(d.held(), 2u);
  EXPECT_EQ(d.chunks_left(), 10u);
  EXPECT_EQ(d.gap_chunks(), 1u);  // a re-request needs only chunk 1
  // A re-request from 1024 (an older one may bring 1..4: 2 and 3 are duplicates by now).
  EXPECT_EQ(d.add(1024, slice(img, 1024, 1024)), o::stored);
  EXPECT_EQ(d.first_missing(), 4096u);
  EXPECT_EQ(d.held(), 0u);
  EXPECT_EQ(d.gap_chunks(), d.chunks_left());  // no gap: up to the end
  EXPECT_EQ(d.add(2048, slice(img, 2048, 1024)), o::duplicate);
  EXPECT_EQ(d.add(3072, slice(img, 3072, 1024)), o::duplicate);
  // The rest backwards: everything is held until chunk 4 closes the gap.
  for (std::size_t off = 10 * 1024; off >= 4096; off -= 1024)
    EXPECT_EQ(d.add(off, slice(img, off, 1024)), o::stored) << off;
  ASSERT_TRUE(d.complete());
  EXPECT_EQ(d.add(10 * 1024, slice(img, 10 * 1024, 1024)), o::duplicate);
  EXPECT_EQ(crypto::to_hex(d.finish()), crypto::sha256_hex(img));
}

TEST(image_download, refuses_chunks_that_fit_no_request) {
  const auto img = image_bytes(3000);
  image_download d(img.size(), 1024);
  using o = image_download::outcome;
  EXPECT_EQ(d.add(3000, "x"), o::bad_offset);                    // at size
  EXPECT_EQ(d.add(100, slice(img, 100, 1024)), o::bad_offset);   // off the chunk grid
  EXPECT_EQ(d.add(0, slice(img, 0, 1000)), o::bad_length);       // short
  EXPECT_EQ(d.add(0, slice(img, 0, 1025)), o::bad_length);       // a middle chunk too long
  EXPECT_EQ(d.add(2048, slice(img, 2048, 100)), o::bad_length);  // last chunk short
  EXPECT_EQ(d.first_missing(), 0u);
}

TEST(image_download, stops_reading_at_size) {
  const auto img = image_bytes(2100);
  image_download d(img.size(), 1024);
  EXPECT_EQ(d.add(0, slice(img, 0, 1024)), image_download::outcome::stored);
  EXPECT_EQ(d.add(1024, slice(img, 1024, 1024)), image_download::outcome::stored);
  // The last chunk with trailing bytes past the image: they are not part of it.
  EXPECT_EQ(d.add(2048, slice(img, 2048, 1024) + "trailing garbage"),
            image_download::outcome::stored);
  ASSERT_TRUE(d.complete());
  EXPECT_EQ(crypto::to_hex(d.finish()), crypto::sha256_hex(img));
}

// ---------------------------------------------------------------- the state machine

class sim_device : public ::testing::Test {
 protected:
  sim_device() {
    settings_.model = "esp32-devkitc";
    settings_.attrs = json{{"site", "w3"}};
    settings_.interval = 10s;
    settings_.jitter = 0;
    settings_.answer_timeout = 10s;
    settings_.chunk_timeout = 5s;
    settings_.chunk_retries = 2;
    settings_.install_time = 1s;
    settings_.reboot_time = 2s;
    settings_.fake_download_time = 3s;
    settings_.pinned = &pub_;
    now_.mono = sim_clock::time_point{} + 1h;
    now_.unix_s = kNow;
  }

  std::unique_ptr<device> make(std::uint64_t seed = 1) {
    return std::make_unique<device>("dev-1", v("1.0.0"), settings_, topics_, seed);
  }

  // Moves the clock to the device's deadline and runs it.
  void tick(device& d) {
    ASSERT_TRUE(d.deadline().has_value());
    const auto dt = *d.deadline() - now_.mono;
    now_.mono = *d.deadline();
    now_.unix_s += std::chrono::duration_cast<std::chrono::seconds>(dt).count();
    d.on_timer(now_, fx_);
  }

  // Starts the device and runs it up to its check; returns the check's body.
  json start_and_check(device& d) {
    d.start(now_);
    tick(d);
    EXPECT_EQ(d.current_phase(), phase::checking);
    auto checks = sent("ota/v1/dev/dev-1/up/check");
    EXPECT_EQ(checks.size(), 1u);
    return checks.empty() ? json() : checks.front();
  }

  void deliver(device& d, const std::string& sub, const std::string& payload) {
    d.on_message(now_, "ota/v1/dev/dev-1/down/" + sub, payload, fx_);
  }

  void offer(device& d, const json& check, const ordered_json& claims) {
    const json answer = {{"req", check["req"]},
                         {"update", claims["update"]},
                         {"manifest", crypto::jws_sign(key_, claims)}};
    deliver(d, "offer", answer.dump());
  }

  void chunk(device& d, const std::string& file, std::size_t off, std::size_t len) {
    deliver(d, "chunk/" + file + "/" + std::to_string(off), slice(image_, off, len));
  }

  // Bodies published on `topic` since the last call (they are taken out).
  std::vector<json> sent(const std::string& topic) {
    std::vector<json> out;
    std::vector<outgoing> keep;
    for (auto& p : fx_.publish) {
      if (p.topic == topic)
        out.push_back(json::parse(p.payload));
      else
        keep.push_back(std::move(p));
    }
    fx_.publish = std::move(keep);
    return out;
  }
  std::vector<json> statuses() { return sent("ota/v1/dev/dev-1/up/status"); }
  std::vector<json> chunk_requests() { return sent("ota/v1/dev/dev-1/up/chunk"); }

  static std::vector<std::string> states(const std::vector<json>& st) {
    std::vector<std::string> out;
    for (const auto& s : st) out.push_back(s["state"]);
    return out;
  }
  std::size_t errors(const std::string& code) const {
    return static_cast<std::size_t>(std::count_if(
        fx_.notes.begin(), fx_.notes.end(),
        [&](const note& n) { return n.what == note::kind::error && n.code == code; }));
  }

  crypto::ec_key key_ = crypto::ec_key::generate();
  crypto::ec_key pub_ = crypto::ec_key::from_public_pem(key_.public_pem()).value();
  protocol::topics topics_{"ota/v1"};
  device_settings settings_;
  sim_time now_;
  effects fx_;
  std::string image_ = image_bytes(10 * 1024 + 100);  // 11 chunks of 1024
};

TEST_F(sim_device, checks_with_a_fresh_nonce_and_its_attributes) {
  auto d = make();
  const auto c1 = start_and_check(*d);
  EXPECT_EQ(c1["model"], "esp32-devkitc");
  EXPECT_EQ(c1["version"], "1.0.0");
  EXPECT_EQ(c1["attrs"], json({{"site", "w3"}}));
  EXPECT_EQ(c1["nonce"].get<std::string>().size(), 32u);
  // No answer: a timeout, then the next check one interval later with a new nonce and req.
  tick(*d);
  EXPECT_EQ(d->current_phase(), phase::idle);
  EXPECT_EQ(errors("timeout"), 1u);
  tick(*d);
  const auto c2 = sent("ota/v1/dev/dev-1/up/check");
  ASSERT_EQ(c2.size(), 1u);
  EXPECT_NE(c2[0]["nonce"], c1["nonce"]);
  EXPECT_NE(c2[0]["req"], c1["req"]);
}

TEST_F(sim_device, up_to_date_goes_back_to_idle) {
  auto d = make();
  const auto c = start_and_check(*d);
  offer(*d, c,
        {{"sub", "dev-1"},
         {"update", false},
         {"nonce", c["nonce"]},
         {"iat", kNow},
         {"exp", kNow + 3600},
         {"retry_s", 600}});
  EXPECT_EQ(d->current_phase(), phase::idle);
  EXPECT_TRUE(statuses().empty());
  EXPECT_EQ(*d->deadline(), now_.mono + 10s);
}

TEST_F(sim_device, ignores_an_answer_to_another_check) {
  auto d = make();
  auto c = start_and_check(*d);
  const auto claims = update_claims("dev-1", c["nonce"], "1.1.0", image_);
  c["req"] = "c-999";
  offer(*d, c, claims);
  EXPECT_EQ(d->current_phase(), phase::checking);
  EXPECT_TRUE(statuses().empty());
}

TEST_F(sim_device, downloads_through_gaps_and_duplicates_then_reports_success) {
  auto d = make();
  const auto c = start_and_check(*d);
  const auto claims = update_claims("dev-1", c["nonce"], "1.1.0", image_, 1024, 4);
  const std::string file = claims["chunk"]["file"];
  offer(*d, c, claims);
  ASSERT_EQ(d->current_phase(), phase::downloading);
  auto st = statuses();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0]["state"], "downloading");
  EXPECT_EQ(st[0]["progress"], 0);
  EXPECT_EQ(st[0]["version"], "1.1.0");
  EXPECT_EQ(st[0]["rollout"], "7");
  auto req = chunk_requests();
  ASSERT_EQ(req.size(), 1u);
  EXPECT_EQ(req[0]["file"], file);
  EXPECT_EQ(req[0]["offset"], 0);
  EXPECT_EQ(req[0]["len"], 1024);
  EXPECT_EQ(req[0]["count"], 4);

  // Chunk 1 is lost, 0 comes twice: nothing to ask until the timeout.
  chunk(*d, file, 0, 1024);
  chunk(*d, file, 2048, 1024);
  chunk(*d, file, 0, 1024);
  chunk(*d, file, 3072, 1024);
  EXPECT_TRUE(chunk_requests().empty());
  tick(*d);  // 5 s of silence
  req = chunk_requests();
  ASSERT_EQ(req.size(), 1u);
  EXPECT_EQ(req[0]["offset"], 1024);           // from the first missing offset
  EXPECT_EQ(req[0]["count"], 1);               // just the gap: 2 and 3 are here
  EXPECT_EQ(*d->deadline(), now_.mono + 10s);  // a second silence in a row waits longer

  // The gap closes: 0..3 are complete, so the next window is asked for at once.
  chunk(*d, file, 1024, 1024);
  req = chunk_requests();
  ASSERT_EQ(req.size(), 1u);
  EXPECT_EQ(req[0]["offset"], 4096);
  EXPECT_EQ(req[0]["count"], 4);
  EXPECT_EQ(*d->deadline(), now_.mono + 5s);  // progress resets the backoff
  // Late copies of the first answer are duplicates; a chunk of another file is not ours.
  chunk(*d, file, 2048, 1024);
  chunk(*d, "ffffffffffffffff", 5120, 1024);
  chunk(*d, file, 3072, 1024);
  EXPECT_TRUE(chunk_requests().empty());
  for (std::size_t off = 4096; off < 8192; off += 1024) chunk(*d, file, off, 1024);
  req = chunk_requests();
  ASSERT_EQ(req.size(), 1u);
  EXPECT_EQ(req[0]["offset"], 8192);
  EXPECT_EQ(req[0]["count"], 3);  // only three chunks are left
  chunk(*d, file, 10240, 1024);   // the short last one first
  chunk(*d, file, 8192, 1024);
  chunk(*d, file, 9216, 1024);
  EXPECT_TRUE(chunk_requests().empty());
  EXPECT_EQ(errors("bad_chunk"), 0u);

  st = statuses();
  std::vector<int> progress;
  for (const auto& s : st)
    if (s["state"] == "downloading") progress.push_back(s["progress"]);
  EXPECT_EQ(progress, (std::vector<int>{25, 50, 75, 100}));
  EXPECT_EQ(states(st).back(), "installing");
  EXPECT_EQ(st[st.size() - 2]["state"], "verifying");
  EXPECT_EQ(d->current_phase(), phase::installing);
  EXPECT_EQ(d->version(), "1.0.0");

  tick(*d);  // installed
  EXPECT_EQ(d->current_phase(), phase::rebooting);
  tick(*d);  // rebooted
  st = statuses();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0]["state"], "success");
  EXPECT_EQ(st[0]["version"], "1.1.0");
  EXPECT_EQ(st[0]["rollout"], "7");
  EXPECT_EQ(d->version(), "1.1.0");
  EXPECT_EQ(d->current_phase(), phase::idle);
  const auto updated = std::find_if(fx_.notes.begin(), fx_.notes.end(),
                                    [](const note& n) { return n.what == note::kind::updated; });
  ASSERT_NE(updated, fx_.notes.end());
  EXPECT_EQ(updated->took, 5s + 1s + 2s);  // one chunk timeout, install, reboot

  tick(*d);  // the next check says the new version
  const auto next = sent("ota/v1/dev/dev-1/up/check");
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0]["version"], "1.1.0");
}

TEST_F(sim_device, reports_a_refused_manifest_as_rejected) {
  auto d = make();
  const auto c = start_and_check(*d);
  offer(*d, c, update_claims("dev-2", c["nonce"], "1.1.0", image_));
  const auto st = statuses();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0]["state"], "rejected");
  EXPECT_EQ(st[0]["version"], "1.1.0");
  EXPECT_NE(st[0]["error"].get<std::string>().find("sub"), std::string::npos);
  EXPECT_EQ(d->current_phase(), phase::idle);
  EXPECT_TRUE(chunk_requests().empty());
  EXPECT_EQ(errors("rejected"), 1u);
}

TEST_F(sim_device, rejects_a_forged_offer_without_naming_its_rollout) {
  auto d = make();
  const auto c = start_and_check(*d);
  const auto forger = crypto::ec_key::generate();
  const json answer = {
      {"req", c["req"]},
      {"update", true},
      {"manifest", crypto::jws_sign(forger, update_claims("dev-1", c["nonce"], "6.6.6", image_))}};
  deliver(*d, "offer", answer.dump());
  const auto st = statuses();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0]["state"], "rejected");
  EXPECT_FALSE(st[0].contains("rollout"));
  EXPECT_NE(st[0]["error"].get<std::string>().find("signature"), std::string::npos);
}

TEST_F(sim_device, rejects_a_downgrade_without_the_flag) {
  auto d = make();
  const auto c = start_and_check(*d);
  offer(*d, c, update_claims("dev-1", c["nonce"], "0.9.0", image_));
  const auto st = statuses();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0]["state"], "rejected");
  EXPECT_EQ(d->version(), "1.0.0");
}

TEST_F(sim_device, an_error_answer_to_the_check_is_counted_by_code) {
  auto d = make();
  const auto c = start_and_check(*d);
  deliver(*d, "error",
          json({{"req", c["req"]}, {"code", "rate_limited"}, {"message", "slow down"}}).dump());
  EXPECT_EQ(d->current_phase(), phase::idle);
  EXPECT_EQ(errors("rate_limited"), 1u);
}

TEST_F(sim_device, a_chunk_request_refused_fails_the_update) {
  auto d = make();
  const auto c = start_and_check(*d);
  offer(*d, c, update_claims("dev-1", c["nonce"], "1.1.0", image_));
  const auto req = chunk_requests();
  ASSERT_EQ(req.size(), 1u);
  (void)statuses();
  deliver(*d, "error",
          json({{"req", req[0]["req"]},
                {"code", "unavailable"},
                {"message", "chunk download is not available on this server yet"}})
              .dump());
  const auto st = statuses();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0]["state"], "failed");
  EXPECT_NE(st[0]["error"].get<std::string>().find("unavailable"), std::string::npos);
  EXPECT_EQ(d->current_phase(), phase::idle);
  EXPECT_EQ(errors("unavailable"), 1u);
}

TEST_F(sim_device, a_stalled_download_gives_up_after_its_retries) {
  auto d = make();
  const auto c = start_and_check(*d);
  offer(*d, c, update_claims("dev-1", c["nonce"], "1.1.0", image_));
  EXPECT_EQ(chunk_requests().size(), 1u);
  tick(*d);
  tick(*d);  // two re-requests (chunk_retries = 2)
  EXPECT_EQ(chunk_requests().size(), 2u);
  tick(*d);
  EXPECT_EQ(states(statuses()).back(), "failed");
  EXPECT_EQ(errors("chunk_timeout"), 1u);
  EXPECT_EQ(d->current_phase(), phase::idle);
}

TEST_F(sim_device, a_wrong_image_is_not_installed) {
  auto d = make();
  const auto c = start_and_check(*d);
  auto claims = update_claims("dev-1", c["nonce"], "1.1.0", image_, 4096, 16);
  const std::string file = claims["chunk"]["file"];
  offer(*d, c, claims);
  image_[5000] ^= 1;  // what arrives is not what was signed
  for (std::size_t off = 0; off < image_.size(); off += 4096) chunk(*d, file, off, 4096);
  const auto st = statuses();
  EXPECT_EQ(states(st).back(), "failed");
  EXPECT_NE(st.back()["error"].get<std::string>().find("sha256"), std::string::npos);
  EXPECT_EQ(d->version(), "1.0.0");
}

TEST_F(sim_device, verifies_the_release_signature_when_it_pins_a_release_key) {
  const auto release = crypto::ec_key::generate();
  const auto release_pub = crypto::ec_key::from_public_pem(release.public_pem()).value();
  settings_.release_key = &release_pub;
  for (const bool genuine : {true, false}) {
    auto d = make();
    const auto c = start_and_check(*d);
    auto claims = update_claims("dev-1", c["nonce"], "1.1.0", image_, 4096, 16);
    const auto signer = genuine ? crypto::ec_key::from_private_pem(release.private_pem()).value()
                                : crypto::ec_key::generate();
    claims["image_sig"] = crypto::base64url_encode(signer.sign(image_));
    const std::string file = claims["chunk"]["file"];
    offer(*d, c, claims);
    for (std::size_t off = 0; off < image_.size(); off += 4096) chunk(*d, file, off, 4096);
    EXPECT_EQ(d->current_phase(), genuine ? phase::installing : phase::idle) << genuine;
    EXPECT_EQ(errors("image_sig"), genuine ? 0u : 1u);
    (void)statuses();
    (void)sent("ota/v1/dev/dev-1/up/check");
  }
}

TEST_F(sim_device, with_a_release_key_pinned_it_refuses_an_unsigned_image) {
  const auto release = crypto::ec_key::generate();
  const auto release_pub = crypto::ec_key::from_public_pem(release.public_pem()).value();
  settings_.release_key = &release_pub;
  auto d = make();
  const auto c = start_and_check(*d);
  const auto claims = update_claims("dev-1", c["nonce"], "1.1.0", image_, 4096, 16);
  const std::string file = claims["chunk"]["file"];
  offer(*d, c, claims);
  for (std::size_t off = 0; off < image_.size(); off += 4096) chunk(*d, file, off, 4096);
  EXPECT_EQ(errors("image_sig"), 1u);
  const auto st = statuses();
  EXPECT_EQ(states(st).back(), "failed");
  EXPECT_NE(st.back()["error"].get<std::string>().find("no image_sig"), std::string::npos);
  EXPECT_EQ(d->version(), "1.0.0");
}

// --via http: the device asks the fleet to fetch the manifest's url and judges the result.
class sim_device_http : public sim_device {
 protected:
  sim_device_http() {
    settings_.via = transport::http;
    settings_.http_timeout = 60s;
  }
  ordered_json claims_with_url(const json& check) {
    auto claims = update_claims("dev-1", check["nonce"], "1.1.0", image_, 4096, 16);
    claims["url"] = "http://127.0.0.1:9/i/abc?t=x";
    return claims;
  }
  fetch_result result_for(const fetch_request& r, const std::string& body) {
    fetch_result out;
    out.id = r.id;
    out.bytes = body.size();
    out.sha256 = crypto::sha256(body);
    return out;
  }
};

TEST_F(sim_device_http, fetches_the_url_and_installs_a_good_image) {
  auto d = make();
  const auto c = start_and_check(*d);
  offer(*d, c, claims_with_url(c));
  EXPECT_TRUE(chunk_requests().empty());
  ASSERT_EQ(fx_.fetches.size(), 1u);
  const auto req = fx_.fetches.front();
  EXPECT_EQ(req.url, "http://127.0.0.1:9/i/abc?t=x");
  EXPECT_EQ(req.size, image_.size());
  fx_.fetches.clear();
  // A result for another request (a stale one) changes nothing.
  auto stale = result_for(req, image_);
  stale.id += 1000;
  d->on_fetched(now_, stale, fx_);
  EXPECT_EQ(d->current_phase(), phase::downloading);
  d->on_fetched(now_, result_for(req, image_), fx_);
  EXPECT_EQ(d->current_phase(), phase::installing);
  tick(*d);  // install
  tick(*d);  // reboot
  EXPECT_EQ(states(statuses()), (std::vector<std::string>{"downloading", "downloading", "verifying",
                                                          "installing", "success"}));
  EXPECT_EQ(d->version(), "1.1.0");
}

TEST_F(sim_device_http, refuses_a_wrong_length_a_wrong_digest_an_error_and_silence) {
  struct bad_case {
    std::string code;
    std::function<void(device&, const fetch_request&)> answer;
  };
  const std::vector<bad_case> cases = {
      {"size_mismatch",
       [&](device& d, const fetch_request& r) {
         d.on_fetched(now_, result_for(r, image_ + "x"), fx_);
       }},
      {"sha256_mismatch",
       [&](device& d, const fetch_request& r) {
         auto other = image_;
         other[7] ^= 1;
         d.on_fetched(now_, result_for(r, other), fx_);
       }},
      {"http",
       [&](device& d, const fetch_request& r) {
         fetch_result e;
         e.id = r.id;
         e.error = "HTTP 403";
         d.on_fetched(now_, e, fx_);
       }},
      {"http", [&](device& d, const fetch_request&) { tick(d); }},  // no answer in time
  };
  for (const auto& bc : cases) {
    fx_.clear();
    auto d = make();
    const auto c = start_and_check(*d);
    offer(*d, c, claims_with_url(c));
    ASSERT_EQ(fx_.fetches.size(), 1u);
    bc.answer(*d, fx_.fetches.front());
    EXPECT_EQ(errors(bc.code), 1u) << bc.code;
    EXPECT_EQ(states(statuses()).back(), "failed") << bc.code;
    EXPECT_EQ(d->current_phase(), phase::idle);
    EXPECT_EQ(d->version(), "1.0.0");
  }
}

TEST_F(sim_device_http, a_manifest_without_url_fails) {
  auto d = make();
  const auto c = start_and_check(*d);
  offer(*d, c, update_claims("dev-1", c["nonce"], "1.1.0", image_));
  EXPECT_TRUE(fx_.fetches.empty());
  EXPECT_EQ(errors("no_url"), 1u);
  EXPECT_EQ(states(statuses()).back(), "failed");
}

TEST_F(sim_device, without_download_it_reports_the_steps_and_succeeds) {
  settings_.download = false;
  auto d = make();
  const auto c = start_and_check(*d);
  offer(*d, c, update_claims("dev-1", c["nonce"], "1.1.0", image_));
  EXPECT_TRUE(chunk_requests().empty());
  tick(*d);  // the pretend download
  tick(*d);  // install
  tick(*d);  // reboot
  EXPECT_TRUE(chunk_requests().empty());
  EXPECT_EQ(states(statuses()), (std::vector<std::string>{"downloading", "downloading", "verifying",
                                                          "installing", "success"}));
  EXPECT_EQ(d->version(), "1.1.0");
}

TEST_F(sim_device, injected_failure_reports_failed_and_keeps_the_old_version) {
  settings_.download = false;
  settings_.fail_rate = 1.0;
  auto d = make();
  const auto c = start_and_check(*d);
  offer(*d, c, update_claims("dev-1", c["nonce"], "1.1.0", image_));
  tick(*d);
  tick(*d);
  const auto st = statuses();
  EXPECT_EQ(st.back()["state"], "failed");
  EXPECT_EQ(st.back()["version"], "1.1.0");
  EXPECT_TRUE(st.back().contains("error"));
  EXPECT_EQ(d->version(), "1.0.0");
  EXPECT_EQ(d->current_phase(), phase::idle);
}

TEST_F(sim_device, injected_rollback_reports_from_the_old_version_and_checks_with_it) {
  settings_.download = false;
  settings_.fail_rate = 0.5;  // failed below 0.5, rolled back from 0.5 to 0.75
  bool seen = false;
  for (std::uint64_t seed = 1; seed < 200 && !seen; ++seed) {
    auto d = make(seed);
    const auto c = start_and_check(*d);
    offer(*d, c, update_claims("dev-1", c["nonce"], "1.1.0", image_));
    tick(*d);
    tick(*d);
    if (d->current_phase() != phase::rebooting) {
      (void)statuses();
      continue;
    }
    tick(*d);
    const auto st = statuses();
    if (st.back()["state"] != "rolled_back") continue;
    seen = true;
    EXPECT_EQ(st.back()["version"], "1.0.0");
    EXPECT_EQ(st.back()["rollout"], "7");
    EXPECT_TRUE(st.back().contains("error"));
    EXPECT_EQ(d->version(), "1.0.0");
    tick(*d);
    const auto next = sent("ota/v1/dev/dev-1/up/check");
    ASSERT_EQ(next.size(), 1u);
    EXPECT_EQ(next[0]["version"], "1.0.0");
  }
  EXPECT_TRUE(seen) << "no seed rolled back";
}

}  // namespace
}  // namespace otter::sim
