// Signed download links (src/http/link_signer) and Range parsing (src/http/server).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "crypto/hash.hpp"
#include "http/link_signer.hpp"
#include "http/server.hpp"

namespace otter::http {
namespace {

const std::string kSha = crypto::sha256_hex("image");
const std::string kOther = crypto::sha256_hex("other image");
constexpr std::int64_t kExp = 1'800'000'000;

link_signer signer(std::uint8_t fill = 7) {
  return link_signer(std::vector<std::uint8_t>(32, fill));
}

// The query values of a path made by link_signer::make.
struct query {
  std::string d, exp, t;
};
query parse(const std::string& path) {
  query q;
  const auto qs = path.substr(path.find('?') + 1);
  std::size_t at = 0;
  while (at <= qs.size()) {
    auto end = qs.find('&', at);
    if (end == std::string::npos) end = qs.size();
    const auto kv = qs.substr(at, end - at);
    const auto eq = kv.find('=');
    const auto k = kv.substr(0, eq), v = kv.substr(eq + 1);
    (k == "d" ? q.d : k == "exp" ? q.exp : q.t) = v;
    at = end + 1;
  }
  return q;
}

TEST(http_link, make_has_the_documented_shape) {
  const auto s = signer();
  const auto p = s.make("dev-1", kSha, kExp);
  EXPECT_EQ(p, "/v1/images/" + kSha + "?d=dev-1&exp=1800000000&t=" + s.token("dev-1", kSha, kExp));
  // base64url of 32 bytes, no padding.
  EXPECT_EQ(s.token("dev-1", kSha, kExp).size(), 43u);
  const auto mac =
      crypto::hmac_sha256(std::vector<std::uint8_t>(32, 7), "v1|dev-1|" + kSha + "|1800000000");
  EXPECT_EQ(s.token("dev-1", kSha, kExp), crypto::base64url_encode(mac));
}

TEST(http_link, a_fresh_token_verifies_until_exp) {
  const auto s = signer();
  const auto q = parse(s.make("dev-1", kSha, kExp));
  EXPECT_EQ(s.verify(kSha, q.d, q.exp, q.t, kExp - 100).verdict, link_verdict::ok);
  EXPECT_EQ(s.verify(kSha, q.d, q.exp, q.t, kExp).verdict, link_verdict::ok);
  EXPECT_EQ(s.verify(kSha, q.d, q.exp, q.t, kExp + 1).verdict, link_verdict::expired);
  EXPECT_EQ(s.verify(kSha, q.d, q.exp, q.t, kExp).exp, kExp);
}

TEST(http_link, anything_changed_is_a_bad_token) {
  const auto s = signer();
  const auto q = parse(s.make("dev-1", kSha, kExp));
  const auto now = kExp - 10;
  auto tampered = q.t;
  tampered[5] = tampered[5] == 'A' ? 'B' : 'A';
  EXPECT_EQ(s.verify(kSha, q.d, q.exp, tampered, now).verdict, link_verdict::bad_token);
  EXPECT_EQ(s.verify(kSha, "dev-2", q.exp, q.t, now).verdict, link_verdict::bad_token);
  EXPECT_EQ(s.verify(kOther, q.d, q.exp, q.t, now).verdict, link_verdict::bad_token);
  EXPECT_EQ(s.verify(kSha, q.d, std::to_string(kExp + 3600), q.t, now).verdict,
            link_verdict::bad_token);
  // Another secret signs other tokens.
  EXPECT_EQ(signer(8).verify(kSha, q.d, q.exp, q.t, now).verdict, link_verdict::bad_token);
  // An expired link with a forged token is "bad", not "expired": no oracle for old links.
  EXPECT_EQ(s.verify(kSha, q.d, q.exp, tampered, kExp + 10).verdict, link_verdict::bad_token);
}

TEST(http_link, malformed_parameters) {
  const auto s = signer();
  const auto q = parse(s.make("dev-1", kSha, kExp));
  const auto now = kExp - 10;
  const struct {
    const char* name;
    std::string sha, d, exp, t;
  } cases[] = {
      {"no device", kSha, "", q.exp, q.t},
      {"bad device", kSha, "dev/1", q.exp, q.t},
      {"no exp", kSha, q.d, "", q.t},
      {"exp not a number", kSha, q.d, "12x", q.t},
      {"exp with sign", kSha, q.d, "+" + q.exp, q.t},
      {"exp with leading zero", kSha, q.d, "0" + q.exp, q.t},
      {"exp too long", kSha, q.d, "9999999999999999999999", q.t},
      {"no token", kSha, q.d, q.exp, ""},
      {"token not base64url", kSha, q.d, q.exp, q.t.substr(0, 42) + "="},
      {"token too short", kSha, q.d, q.exp, q.t.substr(0, 40)},
      {"uppercase sha", std::string(64, 'A'), q.d, q.exp, q.t},
      {"short sha", kSha.substr(0, 63), q.d, q.exp, q.t},
  };
  for (const auto& c : cases)
    EXPECT_EQ(s.verify(c.sha, c.d, c.exp, c.t, now).verdict, link_verdict::malformed) << c.name;
}

TEST(http_link, secrets_are_at_least_32_bytes) {
  EXPECT_THROW(link_signer(std::vector<std::uint8_t>(31, 1)), std::invalid_argument);
}

TEST(http_link, the_secret_file_is_created_once_with_mode_0600) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("otter-link-" + crypto::to_hex(crypto::random_bytes(6)));
  std::filesystem::create_directories(dir);
  const auto file = dir / "link-secret";
  link_signer::secret_file_info info;
  const auto a = link_signer::load_or_create(file, &info);
  EXPECT_TRUE(info.created);
  EXPECT_EQ(info.mode, 0600u);
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 65);  // 64 hex characters and a newline
  // Read, not replaced; the mode it reports is the file's, for the start-up warning.
  ASSERT_EQ(::chmod(file.c_str(), 0644), 0);
  const auto b = link_signer::load_or_create(file, &info);
  EXPECT_FALSE(info.created);
  EXPECT_EQ(info.mode, 0644u);
  EXPECT_EQ(a.token("d", kSha, 1), b.token("d", kSha, 1));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 1);  // no temp left

  // A short operator-provided secret is refused, and the message does not carry it.
  const auto bad = dir / "short";
  std::ofstream(bad) << "hunter2\n";
  try {
    link_signer::load_or_create(bad);
    ADD_FAILURE() << "accepted a short secret";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).find("hunter2"), std::string::npos);
  }
  std::filesystem::remove_all(dir);
}

TEST(http_range, single_ranges) {
  using k = byte_range::kind;
  const auto r = [](std::string_view h, std::uint64_t size = 1000) {
    const auto b = parse_byte_range(h, size);
    return std::tuple(b.k, b.first, b.last);
  };
  EXPECT_EQ(r(""), std::tuple(k::none, 0u, 0u));
  EXPECT_EQ(r("bytes=0-99"), std::tuple(k::single, 0u, 99u));
  EXPECT_EQ(r("bytes=500-"), std::tuple(k::single, 500u, 999u));
  EXPECT_EQ(r("bytes=-100"), std::tuple(k::single, 900u, 999u));
  EXPECT_EQ(r("bytes=-5000"), std::tuple(k::single, 0u, 999u));       // whole file
  EXPECT_EQ(r("bytes=990-5000"), std::tuple(k::single, 990u, 999u));  // clamped
  EXPECT_EQ(r("bytes=999-999"), std::tuple(k::single, 999u, 999u));
  EXPECT_EQ(r("bytes=1000-"), std::tuple(k::unsatisfiable, 0u, 0u));
  EXPECT_EQ(r("bytes=1000-2000"), std::tuple(k::unsatisfiable, 0u, 0u));
  EXPECT_EQ(r("bytes=-0"), std::tuple(k::unsatisfiable, 0u, 0u));
  EXPECT_EQ(r("bytes=0-", 0), std::tuple(k::unsatisfiable, 0u, 0u));
  // Ignored: whole file with 200.
  EXPECT_EQ(r("bytes=0-1,5-6"), std::tuple(k::none, 0u, 0u));
  EXPECT_EQ(r("bytes=5-2"), std::tuple(k::none, 0u, 0u));
  EXPECT_EQ(r("items=0-1"), std::tuple(k::none, 0u, 0u));
  EXPECT_EQ(r("bytes=x-1"), std::tuple(k::none, 0u, 0u));
  EXPECT_EQ(r("bytes=-"), std::tuple(k::none, 0u, 0u));
}

}  // namespace
}  // namespace otter::http
