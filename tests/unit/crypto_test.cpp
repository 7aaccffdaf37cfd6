// SHA-256, HMAC, base64url and ECDSA P-256 keys, checked against known answers and against the
// openssl command line as an independent implementation.
#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "crypto/ec_key.hpp"
#include "crypto/hash.hpp"
#include "crypto/hmac_key.hpp"
#include "support/ecdsa_der.hpp"
#include "support/files.hpp"

namespace otter::crypto {
namespace {

namespace fs = std::filesystem;
using test::der_to_rs;
using test::quote;
using test::read_file;
using test::rs_to_der;
using test::run_shell;
using test::temp_dir;
using test::write_file;

std::vector<std::uint8_t> bytes_of(std::string_view s) {
  return {s.begin(), s.end()};
}

// --- hashes -------------------------------------------------------------------------------

TEST(crypto_hash, sha256_known_answers) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const auto abc = bytes_of("abc");
  EXPECT_EQ(sha256(std::span<const std::uint8_t>(abc)), sha256("abc"));
  EXPECT_EQ(to_hex(std::vector<std::uint8_t>{0x00, 0x0f, 0xa0, 0xff}), "000fa0ff");
}

TEST(crypto_hash, stream_matches_one_shot) {
  std::string data;
  for (int i = 0; i < 100000; ++i) data.push_back(static_cast<char>(i * 31));
  sha256_stream s;
  for (std::size_t off = 0; off < data.size(); off += 4093)
    s.update(std::string_view(data).substr(off, 4093));
  EXPECT_EQ(s.finish(), sha256(data));

  sha256_stream empty;
  EXPECT_EQ(to_hex(empty.finish()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_THROW(empty.finish(), std::logic_error);

  sha256_stream a;
  a.update("ab");
  sha256_stream b = std::move(a);
  b.update(bytes_of("c"));
  EXPECT_EQ(to_hex(b.finish()), sha256_hex("abc"));
}

TEST(crypto_hash, hmac_rfc4231_case2) {
  const auto key = bytes_of("Jefe");
  EXPECT_EQ(to_hex(hmac_sha256(key, "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(crypto_hash, hmac_empty_key_and_data) {
  // Python: hmac.new(b"", b"", hashlib.sha256).hexdigest()
  EXPECT_EQ(to_hex(hmac_sha256({}, "")),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(crypto_hash, hmac_key_gives_the_same_mac_for_every_message) {
  // RFC 4231 test case 2, twice through one key (each call copies the keyed context), then a
  // second message, from several threads at once.
  const hmac_key key(bytes_of("Jefe"));
  EXPECT_EQ(to_hex(key.mac("what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(to_hex(key.mac("what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(key.mac("another message"), hmac_sha256(bytes_of("Jefe"), "another message"));
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i)
        if (to_hex(key.mac("what do ya want for nothing?")) !=
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
          ++wrong;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(crypto_hash, hmac_key_empty) {
  EXPECT_EQ(to_hex(hmac_key({}).mac("")),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(crypto_hash, equal_constant_time) {
  const auto a = bytes_of("secret-token");
  const auto b = bytes_of("secret-token");
  const auto c = bytes_of("secret-tokeN");
  const auto d = bytes_of("secret-toke");
  EXPECT_TRUE(equal_ct(a, b));
  EXPECT_FALSE(equal_ct(a, c));
  EXPECT_FALSE(equal_ct(a, d));
  EXPECT_TRUE(equal_ct({}, {}));
  EXPECT_FALSE(equal_ct(a, {}));
}

// --- base64url ----------------------------------------------------------------------------

TEST(crypto_base64url, rfc4648_vectors) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
      {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : cases) {
    EXPECT_EQ(base64url_encode(plain), encoded);
    const auto back = base64url_decode(encoded);
    ASSERT_TRUE(back.has_value()) << encoded;
    EXPECT_EQ(std::string(back->begin(), back->end()), plain);
  }
}

TEST(crypto_base64url, url_alphabet) {
  const std::vector<std::uint8_t> data{0xfb, 0xff, 0xbf};
  EXPECT_EQ(base64url_encode(data), "-_-_");
  EXPECT_EQ(base64url_decode("-_-_"), data);
}

TEST(crypto_base64url, round_trips_every_length) {
  for (std::size_t n = 0; n <= 70; ++n) {
    const auto data = random_bytes(n);
    const auto text = base64url_encode(data);
    EXPECT_EQ(text.size(), (n * 4 + 2) / 3);
    EXPECT_EQ(text.find_first_of("=+/"), std::string::npos);
    const auto back = base64url_decode(text);
    ASSERT_TRUE(back.has_value()) << text;
    EXPECT_EQ(*back, data);
  }
}

TEST(crypto_base64url, refuses_non_canonical_text) {
  const std::string_view bad[] = {
      "Zg==",          // padding
      "Zm8=",          // padding
      "Zm9v+w",        // standard alphabet
      "Zm9v/w",        // standard alphabet
      "Zm 9v",         // whitespace
      "Zm9v\n",        // newline
      "Zm9v\t",        // tab
      "Z",             // 6 bits: no byte can end here
      "Zm9vY",         // len % 4 == 1
      "Zh",            // non-zero trailing bits ("Zg" is the encoding of "f")
      "Zm9",           // non-zero trailing bits ("Zm8" is the encoding of "fo")
      "Zm9v\xc3\xa9",  // non-ASCII
      std::string_view("Zm\0v", 4),
  };
  for (const auto text : bad) EXPECT_FALSE(base64url_decode(text).has_value()) << text;
}

TEST(crypto_random, bytes_differ) {
  EXPECT_TRUE(random_bytes(0).empty());
  const auto a = random_bytes(32);
  const auto b = random_bytes(32);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
}

// --- keys and signatures ------------------------------------------------------------------

TEST(crypto_ec_key, generated_key_round_trips) {
  const auto key = ec_key::generate();
  ASSERT_TRUE(key.has_private());
  ASSERT_NE(key.native(), nullptr);

  const auto der = key.public_der();
  EXPECT_EQ(key.kid(), sha256_hex(der).substr(0, 16));
  EXPECT_EQ(key.kid().size(), 16u);

  const auto pub_pem = key.public_pem();
  EXPECT_EQ(pub_pem.rfind("-----BEGIN PUBLIC KEY-----", 0), 0u);
  auto pub = ec_key::from_public_pem(pub_pem);
  ASSERT_TRUE(pub.ok()) << pub.error().message;
  EXPECT_FALSE(pub->has_private());
  EXPECT_EQ(pub->kid(), key.kid());
  EXPECT_EQ(pub->public_der(), der);
  EXPECT_THROW(static_cast<void>(pub->private_pem()), std::logic_error);
  EXPECT_THROW(static_cast<void>(pub->sign("x")), std::logic_error);

  const auto priv_pem = key.private_pem();
  EXPECT_EQ(priv_pem.rfind("-----BEGIN PRIVATE KEY-----", 0), 0u);
  auto again = ec_key::from_private_pem(priv_pem);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->kid(), key.kid());

  EXPECT_NE(ec_key::generate().kid(), key.kid());
}

TEST(crypto_ec_key, sign_and_verify) {
  const auto key = ec_key::generate();
  const auto other = ec_key::generate();
  const auto sig = key.sign("firmware manifest");
  EXPECT_TRUE(key.verify("firmware manifest", sig));
  EXPECT_FALSE(key.verify("firmware manifesT", sig));
  EXPECT_FALSE(other.verify("firmware manifest", sig));
  EXPECT_FALSE(key.verify("firmware manifest", std::span(sig).first(63)));
  EXPECT_FALSE(key.verify("firmware manifest", {}));
  std::vector<std::uint8_t> longer(sig.begin(), sig.end());
  longer.push_back(0);
  EXPECT_FALSE(key.verify("firmware manifest", longer));
  for (std::size_t i : {0u, 31u, 32u, 63u}) {
    auto flipped = sig;
    flipped[i] ^= 0x01;
    EXPECT_FALSE(key.verify("firmware manifest", flipped)) << i;
  }
  const std::array<std::uint8_t, 64> zeros{};
  EXPECT_FALSE(key.verify("firmware manifest", zeros));

  // ECDSA is randomized: two signatures differ, both verify.
  const auto sig2 = key.sign("firmware manifest");
  EXPECT_NE(sig, sig2);
  EXPECT_TRUE(key.verify("firmware manifest", sig2));
}

TEST(crypto_ec_key, digest_signatures_agree_with_message_signatures) {
  const auto key = ec_key::generate();
  const std::string image(10000, 'x');
  const auto d = sha256(image);
  const auto sig = key.sign_digest(d);
  EXPECT_TRUE(key.verify_digest(d, sig));
  EXPECT_TRUE(key.verify(image, sig));
  EXPECT_TRUE(key.verify_digest(d, key.sign(image)));
  auto other = d;
  other[0] ^= 1;
  EXPECT_FALSE(key.verify_digest(other, sig));
  EXPECT_FALSE(key.verify_digest(d, std::span(sig).first(32)));
}

TEST(crypto_ec_key, openssl_verifies_our_signature) {
  temp_dir dir;
  const auto key = ec_key::generate();
  const std::string data = "signed by otter, checked by openssl\n";
  write_file(dir / "pub.pem", key.public_pem());
  write_file(dir / "input", data);
  write_file(dir / "sig.der", rs_to_der(key.sign(data)));
  std::string out;
  const int rc = run_shell("openssl dgst -sha256 -verify " + quote(dir / "pub.pem") +
                               " -signature " + quote(dir / "sig.der") + " " + quote(dir / "input"),
                           dir, out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("Verified OK"), std::string::npos) << out;

  // And a digest signature, which is what image_sig carries.
  write_file(dir / "sig2.der", rs_to_der(key.sign_digest(sha256(data))));
  const int rc2 =
      run_shell("openssl dgst -sha256 -verify " + quote(dir / "pub.pem") + " -signature " +
                    quote(dir / "sig2.der") + " " + quote(dir / "input"),
                dir, out);
  EXPECT_EQ(rc2, 0) << out;
  EXPECT_NE(out.find("Verified OK"), std::string::npos) << out;
}

TEST(crypto_ec_key, we_verify_openssl_signature) {
  temp_dir dir;
  std::string out;
  ASSERT_EQ(run_shell("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " +
                          quote(dir / "key.pem"),
                      dir, out),
            0)
      << out;
  const std::string image = "an image, as `openssl dgst -sha256 -sign` signs it\n";
  write_file(dir / "image.bin", image);
  ASSERT_EQ(run_shell("openssl dgst -sha256 -sign " + quote(dir / "key.pem") + " -out " +
                          quote(dir / "sig.der") + " " + quote(dir / "image.bin"),
                      dir, out),
            0)
      << out;
  const auto rs = der_to_rs(read_file(dir / "sig.der"));
  ASSERT_EQ(rs.size(), 64u);

  auto key = ec_key::from_private_file(dir / "key.pem");
  ASSERT_TRUE(key.ok()) << key.error().message;
  auto pub = ec_key::from_public_pem(key->public_pem());
  ASSERT_TRUE(pub.ok());
  EXPECT_TRUE(pub->verify_digest(sha256(image), rs));
  EXPECT_TRUE(pub->verify(image, rs));
  EXPECT_FALSE(pub->verify(image + "!", rs));
}

TEST(crypto_ec_key, loads_sec1_and_pkcs8_pem) {
  temp_dir dir;
  std::string out;
  ASSERT_EQ(
      run_shell("openssl ecparam -name prime256v1 -genkey -noout -out " + quote(dir / "sec1.pem"),
                dir, out),
      0)
      << out;
  ASSERT_EQ(run_shell("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " +
                          quote(dir / "pkcs8.pem"),
                      dir, out),
            0)
      << out;
  const auto sec1 = read_file(dir / "sec1.pem");
  const auto pkcs8 = read_file(dir / "pkcs8.pem");
  ASSERT_NE(sec1.find("BEGIN EC PRIVATE KEY"), std::string::npos);
  ASSERT_NE(pkcs8.find("BEGIN PRIVATE KEY"), std::string::npos);

  for (const auto& name : {"sec1.pem", "pkcs8.pem"}) {
    auto from_file = ec_key::from_private_file(dir / name);
    ASSERT_TRUE(from_file.ok()) << name << ": " << from_file.error().message;
    auto from_text = ec_key::from_private_pem(read_file(dir / name));
    ASSERT_TRUE(from_text.ok()) << name;
    EXPECT_TRUE(from_file->has_private());
    EXPECT_EQ(from_file->kid(), from_text->kid());

    // The kid is over the same DER that openssl exports.
    ASSERT_EQ(run_shell("openssl pkey -in " + quote(dir / name) + " -pubout -outform DER -out " +
                            quote(dir / "pub.der"),
                        dir, out),
              0)
        << out;
    EXPECT_EQ(from_file->public_der(), read_file(dir / "pub.der"));
    EXPECT_TRUE(from_file->verify("m", from_file->sign("m")));
  }
}

TEST(crypto_ec_key, refuses_other_keys) {
  temp_dir dir;
  std::string out;
  ASSERT_EQ(run_shell("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " +
                          quote(dir / "rsa.pem"),
                      dir, out),
            0)
      << out;
  ASSERT_EQ(run_shell("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out " +
                          quote(dir / "p384.pem"),
                      dir, out),
            0)
      << out;
  ASSERT_EQ(run_shell("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -aes256 "
                      "-pass pass:secret -out " +
                          quote(dir / "encrypted.pem"),
                      dir, out),
            0)
      << out;
  ASSERT_EQ(run_shell("openssl pkey -in " + quote(dir / "rsa.pem") + " -pubout -out " +
                          quote(dir / "rsa_pub.pem"),
                      dir, out),
            0)
      << out;

  for (const auto& name : {"rsa.pem", "p384.pem"}) {
    auto k = ec_key::from_private_file(dir / name);
    ASSERT_FALSE(k.ok()) << name;
    EXPECT_EQ(k.error().code, errc::bad_request) << name;
    EXPECT_NE(k.error().message.find("key is not an ECDSA P-256 key"), std::string::npos)
        << k.error().message;
    auto t = ec_key::from_private_pem(read_file(dir / name));
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.error().message, "key is not an ECDSA P-256 key");
  }
  auto rsa_pub = ec_key::from_public_pem(read_file(dir / "rsa_pub.pem"));
  ASSERT_FALSE(rsa_pub.ok());
  EXPECT_EQ(rsa_pub.error().code, errc::bad_request);

  // Encrypted: refused, and without waiting on a passphrase prompt.
  auto enc = ec_key::from_private_pem(read_file(dir / "encrypted.pem"));
  ASSERT_FALSE(enc.ok());
  EXPECT_EQ(enc.error().code, errc::bad_request);

  const std::string garbage[] = {"", "garbage",
                                 "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                                 ec_key::generate().public_pem()};
  for (const auto& text : garbage) {
    auto k = ec_key::from_private_pem(text);
    ASSERT_FALSE(k.ok()) << text;
    EXPECT_EQ(k.error().code, errc::bad_request);
    // A refusal never echoes the key text.
    if (!text.empty()) {
      EXPECT_EQ(k.error().message.find(text), std::string::npos);
    }
  }
  EXPECT_FALSE(ec_key::from_public_pem("garbage").ok());
  EXPECT_FALSE(ec_key::from_public_pem(ec_key::generate().private_pem()).ok());

  auto missing = ec_key::from_private_file(dir / "missing.pem");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, errc::not_found);
}

TEST(crypto_ec_key, write_private_file_is_owner_only_and_never_overwrites) {
  temp_dir dir;
  const auto key = ec_key::generate();
  const auto pem = key.private_pem();
  const fs::path path = dir / "signing.pem";

  const mode_t old_umask = ::umask(0);  // even a permissive umask must not widen the mode
  const auto written = write_private_file(path, pem);
  ::umask(old_umask);
  ASSERT_TRUE(written.ok()) << written.error().message;

  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(read_file(path), pem);
  auto loaded = ec_key::from_private_file(path);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->kid(), key.kid());

  const auto again = write_private_file(path, ec_key::generate().private_pem());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, errc::conflict);
  EXPECT_NE(again.error().message.find(path.string()), std::string::npos);
  EXPECT_EQ(read_file(path), pem);

  const fs::path nowhere = dir / "no-such-dir" / "key.pem";
  const auto failed = write_private_file(nowhere, pem);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code, errc::internal);
  EXPECT_NE(failed.error().message.find(nowhere.string()), std::string::npos);
}

}  // namespace
}  // namespace otter::crypto
