// The core's download: windowed chunk requests, in-order reassembly with gaps, duplicates and
// reordering, resume, and the final size / SHA-256 / image_sig checks.
#include <gtest/gtest.h>

#include <deque>
#include <random>

#include "crypto/hash.hpp"
#include "test_util.hpp"

namespace otter::device_test {
namespace {

using nlohmann::json;

std::string random_image(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

struct chunk {
  std::uint64_t offset;
  std::string bytes;
};

// What otterd answers to a chunk request (PROTOCOL.md "chunk request").
std::vector<chunk> serve(const std::string& image, const json& req, std::uint32_t max,
                         std::uint32_t window) {
  const std::uint64_t offset = req["offset"];
  const std::uint32_t len = req["len"], count = req["count"];
  EXPECT_LE(len, max);
  EXPECT_LE(count, window);
  EXPECT_LT(offset, image.size());
  std::vector<chunk> out;
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::uint64_t at = offset + std::uint64_t(i) * len;
    if (at >= image.size()) break;
    out.push_back({at, image.substr(at, len)});
  }
  return out;
}

struct download_fixture : device_fixture {
  std::string image;
  std::string flash;  // what the device wrote, at the offsets the core gave
  std::uint32_t max = 4096, window = 16;

  download_fixture(std::size_t size, std::uint32_t dev_len = 4096, std::uint32_t dev_window = 16)
      : device_fixture("esp32-a1b2c3", "1.0.0", dev_len, dev_window),
        image(random_image(size, static_cast<unsigned>(size))) {}

  otter_err accept(const std::string& img, nlohmann::ordered_json extra = {}) {
    auto [req, nonce] = check();
    auto claims = update_claims(nonce, crypto::sha256_hex(img), img.size());
    claims["chunk"]["max"] = max;
    claims["chunk"]["window"] = window;
    if (extra.is_object())
      for (auto& [k, v] : extra.items()) claims[k] = v;
    return handle(offer(req, true, sign_jws(key, default_header(key), claims)));
  }
  json request() {
    char buf[256];
    std::size_t n = 0;
    EXPECT_EQ(otter_build_chunk_request(&dev, buf, sizeof buf, &n), OTTER_OK);
    return json::parse(std::string(buf, n));
  }
  otter_err receive(const chunk& c) {
    const auto rc = otter_chunk_receive(
        &dev, c.offset, reinterpret_cast<const std::uint8_t*>(c.bytes.data()), c.bytes.size());
    if (rc == OTTER_OK) {
      EXPECT_EQ(c.offset, flash.size());  // sequential writes only
      flash += c.bytes;
    }
    return rc;
  }
};

TEST(device_core_download, windows_respect_manifest_and_device_limits) {
  download_fixture f(10'000, 1000, 4);  // the device's limits are below the manifest's
  ASSERT_EQ(f.accept(f.image), OTTER_OK);
  std::vector<json> reqs;
  while (!otter_download_complete(&f.dev)) {
    ASSERT_TRUE(otter_download_need_request(&f.dev));
    auto r = f.request();
    reqs.push_back(r);
    EXPECT_EQ(r["file"], crypto::sha256_hex(f.image).substr(0, 16));
    for (const auto& c : serve(f.image, r, f.max, f.window)) {
      EXPECT_FALSE(otter_download_need_request(&f.dev) && c.offset != r["offset"]);
      ASSERT_EQ(f.receive(c), OTTER_OK);
    }
  }
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[0]["offset"], 0);
  EXPECT_EQ(reqs[0]["len"], 1000);
  EXPECT_EQ(reqs[0]["count"], 4);
  EXPECT_EQ(reqs[1]["offset"], 4000);
  EXPECT_EQ(reqs[2]["offset"], 8000);
  EXPECT_EQ(reqs[2]["count"], 2);  // only what is left
  EXPECT_EQ(otter_download_progress(&f.dev), 100);
  EXPECT_FALSE(otter_download_need_request(&f.dev));
  char buf[256];
  EXPECT_EQ(otter_build_chunk_request(&f.dev, buf, sizeof buf, nullptr), OTTER_E_STATE);
  EXPECT_EQ(otter_download_finish(&f.dev), OTTER_OK);
  EXPECT_EQ(f.flash, f.image);
}

TEST(device_core_download, manifest_limits_below_the_device_limits) {
  download_fixture f(5000, 4096, 16);
  f.max = 512;
  f.window = 3;
  ASSERT_EQ(f.accept(f.image), OTTER_OK);
  auto r = f.request();
  EXPECT_EQ(r["len"], 512);
  EXPECT_EQ(r["count"], 3);
}

TEST(device_core_download, gaps_duplicates_and_reordering) {
  download_fixture f(100'000, 1024, 8);
  ASSERT_EQ(f.accept(f.image), OTTER_OK);
  std::mt19937 rng(1);
  std::deque<chunk> in_flight;
  int requests = 0, dups = 0, refused = 0;
  while (!otter_download_complete(&f.dev)) {
    ASSERT_LT(requests, 2000);
    if (otter_download_need_request(&f.dev) || in_flight.empty()) {  // empty: the "timeout"
      ++requests;
      for (auto& c : serve(f.image, f.request(), f.max, f.window)) {
        const auto dice = rng() % 10;
        if (dice == 0) continue;  // lost
        in_flight.push_back(c);
        if (dice == 1) in_flight.push_back(c);  // delivered twice
        if (dice == 2 && in_flight.size() >= 2)
          std::swap(in_flight[in_flight.size() - 1], in_flight[in_flight.size() - 2]);
      }
    }
    if (in_flight.empty()) continue;
    const auto c = in_flight.front();
    in_flight.pop_front();
    const auto rc = f.receive(c);
    ASSERT_TRUE(rc == OTTER_OK || rc == OTTER_DUPLICATE || rc == OTTER_OUT_OF_ORDER)
        << otter_err_name(rc);
    dups += rc == OTTER_DUPLICATE;
    refused += rc == OTTER_OUT_OF_ORDER;
  }
  EXPECT_GT(dups, 0);
  EXPECT_GT(refused, 0);
  EXPECT_EQ(otter_download_finish(&f.dev), OTTER_OK);
  EXPECT_EQ(f.flash, f.image);
}

TEST(device_core_download, a_lost_chunk_is_asked_for_again_once_the_window_is_over) {
  download_fixture f(8192, 1024, 4);
  ASSERT_EQ(f.accept(f.image), OTTER_OK);
  auto chunks = serve(f.image, f.request(), f.max, f.window);
  ASSERT_EQ(chunks.size(), 4u);
  EXPECT_EQ(f.receive(chunks[0]), OTTER_OK);
  EXPECT_EQ(f.receive(chunks[2]), OTTER_OUT_OF_ORDER);  // 1 was lost
  EXPECT_FALSE(otter_download_need_request(&f.dev));
  EXPECT_EQ(f.receive(chunks[3]), OTTER_OUT_OF_ORDER);
  EXPECT_TRUE(otter_download_need_request(&f.dev));  // the window's last chunk came
  EXPECT_EQ(otter_download_offset(&f.dev), 1024u);
  auto r = f.request();
  EXPECT_EQ(r["offset"], 1024);
  EXPECT_FALSE(otter_download_need_request(&f.dev));
  EXPECT_EQ(f.receive(chunks[0]), OTTER_DUPLICATE);
}

TEST(device_core_download, bytes_beyond_size_and_bad_lengths_are_refused) {
  download_fixture f(5000, 1024, 4);
  ASSERT_EQ(f.accept(f.image), OTTER_OK);
  f.request();
  const std::string big(2048, 'x');
  auto rx = [&](std::uint64_t off, std::size_t n) {
    return otter_chunk_receive(&f.dev, off, reinterpret_cast<const std::uint8_t*>(big.data()), n);
  };
  EXPECT_EQ(rx(5000, 1), OTTER_E_BEYOND_SIZE);
  EXPECT_EQ(rx(UINT64_MAX, 1), OTTER_E_BEYOND_SIZE);
  EXPECT_EQ(rx(4990, 20), OTTER_E_BEYOND_SIZE);
  EXPECT_EQ(rx(0, 2048), OTTER_E_CHUNK_LEN);  // above what this device asks for
  EXPECT_EQ(rx(0, 0), OTTER_E_CHUNK_LEN);
  EXPECT_EQ(otter_download_offset(&f.dev), 0u);
  // Restoring more than size is refused too.
  EXPECT_EQ(otter_download_restore(&f.dev, reinterpret_cast<const std::uint8_t*>(big.data()),
                                   6000 > big.size() ? big.size() : 6000),
            OTTER_OK);
  std::string rest(3000, 'y');
  EXPECT_EQ(otter_download_restore(&f.dev, reinterpret_cast<const std::uint8_t*>(rest.data()),
                                   rest.size()),
            OTTER_E_BEYOND_SIZE);
}

TEST(device_core_download, nothing_without_an_accepted_update) {
  download_fixture f(5000);
  char buf[256];
  const std::uint8_t b = 0;
  EXPECT_EQ(otter_build_chunk_request(&f.dev, buf, sizeof buf, nullptr), OTTER_E_STATE);
  EXPECT_EQ(otter_chunk_receive(&f.dev, 0, &b, 1), OTTER_E_STATE);
  EXPECT_EQ(otter_download_finish(&f.dev), OTTER_E_STATE);
  EXPECT_FALSE(otter_download_need_request(&f.dev));
}

TEST(device_core_download, which_error_answers_end_a_download) {
  download_fixture f(5000);
  // No download: nothing to end.
  EXPECT_FALSE(otter_download_error_is_fatal(&f.dev, "k-3", "forbidden"));
  ASSERT_EQ(f.accept(f.image), OTTER_OK);
  const auto req = f.request()["req"].get<std::string>();
  ASSERT_EQ(req.rfind("k-", 0), 0u);
  for (const char* code : {"forbidden", "not_found", "range", "bad_request"})
    EXPECT_TRUE(otter_download_error_is_fatal(&f.dev, req.c_str(), code)) << code;
  // Transient: the chunk timeout asks again.
  for (const char* code : {"rate_limited", "unavailable", "internal"})
    EXPECT_FALSE(otter_download_error_is_fatal(&f.dev, req.c_str(), code)) << code;
  // An answer to a check or a status, or one whose req could not be read.
  EXPECT_FALSE(otter_download_error_is_fatal(&f.dev, "c-1", "bad_request"));
  EXPECT_FALSE(otter_download_error_is_fatal(&f.dev, "s-2", "not_found"));
  EXPECT_FALSE(otter_download_error_is_fatal(&f.dev, "", "bad_request"));
  EXPECT_FALSE(otter_download_error_is_fatal(&f.dev, nullptr, "bad_request"));
  otter_download_abort(&f.dev);
  EXPECT_FALSE(otter_download_error_is_fatal(&f.dev, req.c_str(), "forbidden"));
}

TEST(device_core_download, resume_after_a_disconnect_keeps_the_offset) {
  download_fixture f(20'000, 1024, 4);
  ASSERT_EQ(f.accept(f.image), OTTER_OK);
  for (auto& c : serve(f.image, f.request(), f.max, f.window)) ASSERT_EQ(f.receive(c), OTTER_OK);
  auto second = serve(f.image, f.request(), f.max, f.window);
  ASSERT_EQ(f.receive(second[0]), OTTER_OK);  // then the connection drops
  EXPECT_EQ(otter_download_offset(&f.dev), 5 * 1024u);
  // Reconnected: a new check, the same image offered again.
  ASSERT_EQ(f.accept(f.image), OTTER_OK);
  EXPECT_EQ(otter_download_offset(&f.dev), 5 * 1024u);
  EXPECT_TRUE(otter_download_need_request(&f.dev));
  EXPECT_EQ(f.request()["offset"], 5 * 1024);
  // Late chunks of the old connection's window are harmless.
  EXPECT_EQ(f.receive(second[0]), OTTER_DUPLICATE);
  while (!otter_download_complete(&f.dev)) {
    if (!otter_download_need_request(&f.dev)) {
      auto r = f.request();
      (void)r;
    }
    for (auto& c : serve(f.image, f.request(), f.max, f.window)) {
      const auto rc = f.receive(c);
      ASSERT_TRUE(rc == OTTER_OK || rc == OTTER_DUPLICATE);
    }
  }
  EXPECT_EQ(otter_download_finish(&f.dev), OTTER_OK);
  EXPECT_EQ(f.flash, f.image);
}

TEST(device_core_download, up_to_date_ends_a_download_in_progress) {
  download_fixture f(20'000, 1024, 4);
  ASSERT_EQ(f.accept(f.image), OTTER_OK);
  for (auto& c : serve(f.image, f.request(), f.max, f.window)) ASSERT_EQ(f.receive(c), OTTER_OK);
  auto [req, nonce] = f.check();
  nlohmann::ordered_json claims = {{"sub", "esp32-a1b2c3"}, {"nonce", nonce},  {"iat", 1795000000},
                                   {"exp", 1795003600},     {"update", false}, {"retry_s", 60}};
  ASSERT_EQ(f.handle(f.offer(req, false, sign_jws(f.key, default_header(f.key), claims))),
            OTTER_OK);
  EXPECT_EQ(f.dev.dl.active, 0);
  EXPECT_FALSE(otter_download_need_request(&f.dev));
  const std::uint8_t b = 0;
  EXPECT_EQ(otter_chunk_receive(&f.dev, 4096, &b, 1), OTTER_E_STATE);
}

TEST(device_core_download, another_image_starts_again) {
  download_fixture f(20'000, 1024, 4);
  ASSERT_EQ(f.accept(f.image), OTTER_OK);
  for (auto& c : serve(f.image, f.request(), f.max, f.window)) ASSERT_EQ(f.receive(c), OTTER_OK);
  const auto other = random_image(7000, 99);
  ASSERT_EQ(f.accept(other), OTTER_OK);
  EXPECT_EQ(otter_download_offset(&f.dev), 0u);
}

TEST(device_core_download, resume_after_a_restart_from_flash) {
  download_fixture f(30'000, 1024, 8);
  ASSERT_EQ(f.accept(f.image), OTTER_OK);
  // The bytes already in flash, fed back in pieces.
  const std::size_t have = 12'345;
  for (std::size_t at = 0; at < have; at += 1000) {
    const auto n = std::min<std::size_t>(1000, have - at);
    ASSERT_EQ(otter_download_restore(&f.dev,
                                     reinterpret_cast<const std::uint8_t*>(f.image.data() + at), n),
              OTTER_OK);
  }
  f.flash = f.image.substr(0, have);
  EXPECT_EQ(f.request()["offset"], have);
  f.dev.dl.window_over = 1;
  while (!otter_download_complete(&f.dev)) {
    ASSERT_TRUE(otter_download_need_request(&f.dev));
    for (auto& c : serve(f.image, f.request(), f.max, f.window)) ASSERT_EQ(f.receive(c), OTTER_OK);
  }
  EXPECT_EQ(otter_download_finish(&f.dev), OTTER_OK);
  EXPECT_EQ(f.flash, f.image);
}

// Feeds the whole image in order.
void fetch_all(download_fixture& f) {
  while (!otter_download_complete(&f.dev))
    for (auto& c : serve(f.image, f.request(), f.max, f.window)) ASSERT_EQ(f.receive(c), OTTER_OK);
}

TEST(device_core_download, wrong_sha256_and_incomplete_images_fail) {
  download_fixture f(3000, 1024, 4);
  auto [req, nonce] = f.check();
  const auto other_sha = crypto::sha256_hex("something else");
  auto claims = f.update_claims(nonce, other_sha, f.image.size());
  ASSERT_EQ(f.handle(f.offer(req, true, sign_jws(f.key, default_header(f.key), claims))), OTTER_OK);
  fetch_all(f);
  EXPECT_EQ(otter_download_finish(&f.dev), OTTER_E_SHA256);
  EXPECT_EQ(f.dev.dl.active, 0);

  download_fixture g(3000, 1024, 4);
  ASSERT_EQ(g.accept(g.image), OTTER_OK);
  ASSERT_EQ(g.receive(serve(g.image, g.request(), g.max, g.window).at(0)), OTTER_OK);
  EXPECT_EQ(otter_download_finish(&g.dev), OTTER_E_INCOMPLETE);
}

TEST(device_core_download, image_signature_with_a_pinned_release_key) {
  auto release = crypto::ec_key::generate();
  const auto release_pub = pubkey_of(release);
  const std::string image = random_image(9000, 5);
  const auto digest = crypto::sha256(image);
  const auto good_sig = release.sign_digest(std::span<const std::uint8_t, 32>(digest));
  const auto other_digest = crypto::sha256("other");
  const auto bad_sig = release.sign_digest(std::span<const std::uint8_t, 32>(other_digest));
  const auto b64 = [](const std::array<std::uint8_t, 64>& s) {
    return crypto::base64url_encode(std::span<const std::uint8_t>(s));
  };
  struct sig_case {
    const char* name;
    bool pin;
    nlohmann::ordered_json extra;
    otter_err want;
  };
  const std::vector<sig_case> cases = {
      {"good", true, {{"image_sig", b64(good_sig)}}, OTTER_OK},
      {"signature of another image", true, {{"image_sig", b64(bad_sig)}}, OTTER_E_IMAGE_SIG},
      {"unsigned", true, nlohmann::ordered_json::object(), OTTER_E_IMAGE_SIG_MISSING},
      {"not pinned: ignored", false, {{"image_sig", b64(bad_sig)}}, OTTER_OK},
  };
  for (const auto& c : cases) {
    download_fixture f(image.size(), 1024, 16);
    f.image = image;
    if (c.pin) {
      f.cfg.release_key = &release_pub;
      ASSERT_EQ(otter_init(&f.dev, &f.cfg), OTTER_OK);
    }
    ASSERT_EQ(f.accept(f.image, c.extra), OTTER_OK) << c.name;
    fetch_all(f);
    EXPECT_EQ(otter_download_finish(&f.dev), c.want) << c.name;
  }
}

TEST(device_core_download, incremental_sha256_matches_one_shot) {
  const auto data = random_image(100'003, 3);
  std::mt19937 rng(3);
  otter_sha256_ctx ctx;
  ASSERT_EQ(otter_sha256_start(&ctx), 0);
  for (std::size_t at = 0; at < data.size();) {
    const auto n = std::min<std::size_t>(rng() % 5000, data.size() - at);
    ASSERT_EQ(otter_sha256_update(&ctx, reinterpret_cast<const std::uint8_t*>(data.data() + at), n),
              0);
    at += n;
  }
  std::uint8_t out[32];
  ASSERT_EQ(otter_sha256_finish(&ctx, out), 0);
  const auto want = crypto::sha256(data);
  EXPECT_TRUE(std::equal(want.begin(), want.end(), out));
  std::uint8_t empty[32];
  ASSERT_EQ(otter_sha256(nullptr, 0, empty), 0);
  EXPECT_EQ(crypto::to_hex(std::span<const std::uint8_t>(empty, 32)), crypto::sha256_hex(""));
}

TEST(device_core_download, p256_verify_refuses_junk) {
  auto k = crypto::ec_key::generate();
  const auto pub = pubkey_of(k);
  const auto d = crypto::sha256("x");
  auto sig = k.sign_digest(std::span<const std::uint8_t, 32>(d));
  EXPECT_EQ(otter_p256_verify(pub.point, d.data(), sig.data()), 1);
  sig[10] ^= 1;
  EXPECT_EQ(otter_p256_verify(pub.point, d.data(), sig.data()), 0);
  std::uint8_t zeros[64] = {};
  EXPECT_EQ(otter_p256_verify(pub.point, d.data(), zeros), 0);
  std::uint8_t ff[64];
  std::memset(ff, 0xff, sizeof ff);
  EXPECT_EQ(otter_p256_verify(pub.point, d.data(), ff), 0);
  std::uint8_t off_curve[65];
  std::memcpy(off_curve, pub.point, 65);
  off_curve[64] ^= 1;
  sig[10] ^= 1;
  EXPECT_EQ(otter_p256_verify(off_curve, d.data(), sig.data()), 0);
}

}  // namespace
}  // namespace otter::device_test
