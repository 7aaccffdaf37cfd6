// Release signatures (image_sig): ours and the openssl command line's must be interchangeable,
// since release keys live offline and operators may sign with either. And the release keys
// file (OTTER_RELEASE_KEYS) holds one or more PEM public keys.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "crypto/ec_key.hpp"
#include "crypto/hash.hpp"
#include "service/release_keys.hpp"
#include "support/ecdsa_der.hpp"
#include "support/files.hpp"

namespace otter::service {
namespace {

namespace fs = std::filesystem;
using test::der_to_rs;
using test::quote;
using test::read_file;
using test::rs_to_der;
using test::write_file;

// The digest sign-image computes: the file streamed through sha256_stream.
crypto::digest stream_digest(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  crypto::sha256_stream h;
  std::vector<char> buf(4096);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h.update(std::string_view(buf.data(), static_cast<std::size_t>(in.gcount())));
  }
  return h.finish();
}

class release_sign_test : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("otter-sign-" + crypto::to_hex(crypto::random_bytes(6)));
    fs::create_directories(dir_);
    write_file(dir_ / "release.pem", key_.private_pem());
    write_file(dir_ / "release.pub", key_.public_pem());
    // Larger than one read, and not a multiple of it.
    const auto bytes = crypto::random_bytes(200 * 1024 + 17);
    image_ = std::string(bytes.begin(), bytes.end());
    write_file(dir_ / "image.bin", image_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  int openssl(const std::string& args) {
    const auto cmd = "openssl " + args + " >" + quote(dir_ / "openssl.log") + " 2>&1";
    return std::system(cmd.c_str());
  }

  fs::path dir_;
  crypto::ec_key key_ = crypto::ec_key::generate();
  std::string image_;
};

TEST_F(release_sign_test, streamed_digest_is_the_sha256_of_the_file) {
  EXPECT_EQ(stream_digest(dir_ / "image.bin"), crypto::sha256(image_));
}

TEST_F(release_sign_test, our_image_sig_verifies_with_openssl_dgst) {
  const auto sig = key_.sign_digest(stream_digest(dir_ / "image.bin"));
  const auto image_sig = crypto::base64url_encode(sig);
  const auto decoded = decode_image_sig(image_sig);
  ASSERT_TRUE(decoded);
  write_file(dir_ / "sig.der", rs_to_der(*decoded));
  EXPECT_EQ(openssl("dgst -sha256 -verify " + quote(dir_ / "release.pub") + " -signature " +
                    quote(dir_ / "sig.der") + " " + quote(dir_ / "image.bin")),
            0)
      << read_file(dir_ / "openssl.log");
  // And openssl is really checking: another image fails.
  write_file(dir_ / "other.bin", image_ + "x");
  EXPECT_NE(openssl("dgst -sha256 -verify " + quote(dir_ / "release.pub") + " -signature " +
                    quote(dir_ / "sig.der") + " " + quote(dir_ / "other.bin")),
            0);
}

TEST_F(release_sign_test, openssl_dgst_signature_verifies_with_ours) {
  ASSERT_EQ(openssl("dgst -sha256 -sign " + quote(dir_ / "release.pem") + " -out " +
                    quote(dir_ / "sig.der") + " " + quote(dir_ / "image.bin")),
            0)
      << read_file(dir_ / "openssl.log");
  const auto rs = der_to_rs(read_file(dir_ / "sig.der"));
  ASSERT_EQ(rs.size(), 64u);
  const auto digest = crypto::sha256(image_);
  EXPECT_TRUE(key_.verify_digest(digest, rs));
  // As an image_sig, through the release keys the server loads.
  auto keys = release_key_set::from_file(dir_ / "release.pub");
  ASSERT_TRUE(keys) << keys.error().message;
  EXPECT_TRUE(keys->verify(std::string_view(crypto::base64url_encode(rs)), digest));
  EXPECT_FALSE(
      keys->verify(std::string_view(crypto::base64url_encode(rs)), crypto::sha256(image_ + "x")));
}

TEST_F(release_sign_test, release_keys_file_holds_several_keys) {
  const auto k2 = crypto::ec_key::generate();
  const auto k3 = crypto::ec_key::generate();
  const auto stranger = crypto::ec_key::generate();
  // Comments between the blocks are allowed, as in a hand-kept file.
  write_file(dir_ / "keys.pem", "# 2024 key\n" + key_.public_pem() + "\n# 2025 key\n" +
                                    k2.public_pem() + k3.public_pem());
  auto keys = release_key_set::from_file(dir_ / "keys.pem");
  ASSERT_TRUE(keys) << keys.error().message;
  ASSERT_EQ(keys->size(), 3u);
  EXPECT_EQ(keys->kids(), (std::vector<std::string>{key_.kid(), k2.kid(), k3.kid()}));

  const auto digest = crypto::sha256(image_);
  for (const auto* k : std::vector<const crypto::ec_key*>{&key_, &k2, &k3}) {
    const auto sig = k->sign_digest(digest);
    EXPECT_TRUE(keys->verify(std::string_view(crypto::base64url_encode(sig)), digest));
  }
  const auto bad = stranger.sign_digest(digest);
  EXPECT_FALSE(keys->verify(std::string_view(crypto::base64url_encode(bad)), digest));
  EXPECT_FALSE(keys->verify(std::string_view("not*base64"), digest));
  EXPECT_FALSE(
      keys->verify(std::string_view(crypto::base64url_encode(std::string(63, 'a'))), digest));
}

TEST_F(release_sign_test, release_keys_file_errors_say_what_is_wrong) {
  auto missing = release_key_set::from_file(dir_ / "nope.pem");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, errc::not_found);

  auto none = release_key_set::from_pem("just text\n");
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("BEGIN PUBLIC KEY"), std::string::npos);

  auto garbage = release_key_set::from_pem(key_.public_pem() +
                                           "-----BEGIN PUBLIC KEY-----\nAAAA\n"
                                           "-----END PUBLIC KEY-----\n");
  ASSERT_FALSE(garbage);
  EXPECT_NE(garbage.error().message.find("public key 2"), std::string::npos)
      << garbage.error().message;

  // A private key is not a release key: the server must never hold one.
  auto priv = release_key_set::from_pem(key_.private_pem());
  EXPECT_FALSE(priv);
}

TEST(release_sig_format, image_sig_is_base64url_of_exactly_64_bytes) {
  EXPECT_TRUE(decode_image_sig(crypto::base64url_encode(std::string(64, '\x01'))));
  EXPECT_FALSE(decode_image_sig(crypto::base64url_encode(std::string(65, '\x01'))));
  EXPECT_FALSE(decode_image_sig(crypto::base64url_encode(std::string(32, '\x01'))));
  EXPECT_FALSE(decode_image_sig("c2ln"));
  EXPECT_FALSE(decode_image_sig(""));

  const auto d = crypto::sha256(std::string_view("abc"));
  auto back = digest_from_hex(crypto::to_hex(d));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, d);
  EXPECT_FALSE(digest_from_hex("abc"));
  EXPECT_FALSE(digest_from_hex(std::string(64, 'g')));
}

}  // namespace
}  // namespace otter::service
