// Signed releases and upload garbage collection: `otterd sign-image` agrees with openssl,
// release.add checks image_sig against OTTER_RELEASE_KEYS, the manifest carries it, and uploads
// no release references go away after OTTER_UPLOAD_GC.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <pqxx/pqxx>
#include <thread>

#include "crypto/hash.hpp"
#include "support/ecdsa_der.hpp"
#include "support/files.hpp"
#include "support/harness.hpp"

namespace otter::test {
namespace {

namespace fs = std::filesystem;

const std::string kModel = "esp32-devkitc";

std::string image_sig(const crypto::ec_key& key, const std::string& bytes) {
  return crypto::base64url_encode(key.sign_digest(crypto::sha256(bytes)));
}

// ---- otterd sign-image: no stack needed.

class release_cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("otter-sign-" + random_hex(6));
    fs::create_directories(dir_);
    write_file(dir_ / "release.pem", key_.private_pem());
    write_file(dir_ / "release.pub", key_.public_pem());
    const auto bytes = crypto::random_bytes(150 * 1024 + 3);
    image_ = std::string(bytes.begin(), bytes.end());
    write_file(dir_ / "image.bin", image_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path dir_;
  crypto::ec_key key_ = crypto::ec_key::generate();
  std::string image_;
};

TEST_F(release_cli, sign_image_agrees_with_openssl_dgst_both_ways) {
  auto r = run_command({OTTERD_PATH, "sign-image", "--key", (dir_ / "release.pem").string(),
                        (dir_ / "image.bin").string()});
  ASSERT_EQ(r.status, 0) << r.output;
  ASSERT_FALSE(r.output.empty());
  EXPECT_EQ(r.output.back(), '\n');
  const auto text = r.output.substr(0, r.output.size() - 1);
  const auto rs = crypto::base64url_decode(text);
  ASSERT_TRUE(rs) << text;
  ASSERT_EQ(rs->size(), 64u);

  // Ours, as DER, verifies with openssl over the file.
  write_file(dir_ / "ours.der", rs_to_der(*rs));
  auto v = run_command({"openssl", "dgst", "-sha256", "-verify", (dir_ / "release.pub").string(),
                        "-signature", (dir_ / "ours.der").string(), (dir_ / "image.bin").string()});
  EXPECT_EQ(v.status, 0) << v.output;

  // openssl's, as r||s, verifies with ours over the file's SHA-256.
  auto s = run_command({"openssl", "dgst", "-sha256", "-sign", (dir_ / "release.pem").string(),
                        "-out", (dir_ / "theirs.der").string(), (dir_ / "image.bin").string()});
  ASSERT_EQ(s.status, 0) << s.output;
  const auto theirs = der_to_rs(read_file(dir_ / "theirs.der"));
  ASSERT_EQ(theirs.size(), 64u);
  EXPECT_TRUE(key_.verify_digest(crypto::sha256(image_), theirs));
  EXPECT_TRUE(key_.verify_digest(crypto::sha256(image_), *rs));
}

TEST_F(release_cli, sign_image_usage_errors) {
  const std::string otterd = OTTERD_PATH;
  auto help = run_command({otterd, "sign-image", "--help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.output.find("--key KEY IMAGE"), std::string::npos) << help.output;

  auto no_key = run_command({otterd, "sign-image", (dir_ / "image.bin").string()});
  EXPECT_EQ(no_key.status, 2) << no_key.output;
  EXPECT_NE(no_key.output.find("--key"), std::string::npos) << no_key.output;

  auto no_image = run_command({otterd, "sign-image", "--key", (dir_ / "release.pem").string()});
  EXPECT_EQ(no_image.status, 2) << no_image.output;

  auto two =
      run_command({otterd, "sign-image", "--key", (dir_ / "release.pem").string(), "a", "b"});
  EXPECT_EQ(two.status, 2) << two.output;

  auto missing_image = run_command(
      {otterd, "sign-image", "--key", (dir_ / "release.pem").string(), (dir_ / "nope").string()});
  EXPECT_EQ(missing_image.status, 1) << missing_image.output;
  EXPECT_NE(missing_image.output.find("cannot read"), std::string::npos);

  // A public key cannot sign; the message says what to give.
  auto pub = run_command({otterd, "sign-image", "--key", (dir_ / "release.pub").string(),
                          (dir_ / "image.bin").string()});
  EXPECT_EQ(pub.status, 1) << pub.output;
  EXPECT_NE(pub.output.find("private key"), std::string::npos) << pub.output;
}

// ---- the service

class release_test : public otter_fixture {
 protected:
  // Restarts otterd with the release keys file (an unrelated key first, then the release key).
  void restart_with(const std::map<std::string, std::string>& extra) {
    admin_.reset();
    ASSERT_EQ(stop_otterd(), 0);
    start_otterd(extra);
    admin_ = std::make_unique<operator_client>(env_, *topics_, "admin1");
  }
  fs::path write_release_keys() {
    const auto path = dir_ / "release-keys.pem";
    write_file(path, other_.public_pem() + release_.public_pem());
    return path;
  }
  std::string upload(const std::string& bytes) {
    auto up = admin_->upload("u-" + random_hex(4), bytes);
    EXPECT_EQ(up.value("ok", false), true) << up.dump();
    return up["result"].value("sha256", "");
  }
  nlohmann::json add(const std::string& version, const std::string& sha,
                     const std::optional<std::string>& sig) {
    nlohmann::json args = {{"model", kModel}, {"version", version}, {"sha256", sha}};
    if (sig) args["image_sig"] = *sig;
    return admin_->cmd("release.add", args);
  }

  crypto::ec_key release_ = crypto::ec_key::generate();
  crypto::ec_key other_ = crypto::ec_key::generate();
};

TEST_F(release_test, signed_release_is_accepted_and_the_manifest_carries_a_verifying_image_sig) {
  restart_with(
      {{"OTTER_RELEASE_KEYS", write_release_keys().string()}, {"OTTER_REQUIRE_SIGNED", "1"}});
  const std::string bytes = "signed firmware " + random_hex(8);
  const auto sha = upload(bytes);
  const auto sig = image_sig(release_, bytes);
  auto r = add("2.0.0", sha, sig);
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["result"]["signed"], true);
  EXPECT_EQ(r["result"]["image_sig"], sig);

  create_rollout(kModel, "2.0.0", {{"type", "all"}});
  device d(env_, *topics_, "dev-signed");
  d.connect_started();
  auto o = d.check(*pub_, kModel, "1.0.0");
  ASSERT_TRUE(o) << d.last_error.dump();
  ASSERT_TRUE(o->signature_ok);
  ASSERT_TRUE(o->claims.contains("image_sig")) << o->claims.dump();
  EXPECT_EQ(o->claims["image_sig"], sig);
  // What a device does: verify it with the pinned release key over the SHA-256 it computed.
  const auto rs = crypto::base64url_decode(o->claims["image_sig"].get<std::string>());
  ASSERT_TRUE(rs);
  auto release_pub = crypto::ec_key::from_public_pem(release_.public_pem());
  ASSERT_TRUE(release_pub);
  EXPECT_TRUE(release_pub->verify_digest(crypto::sha256(bytes), *rs));
  EXPECT_EQ(o->claims["sha256"], crypto::sha256_hex(bytes));
}

TEST_F(release_test, bad_or_missing_signatures_are_refused) {
  restart_with(
      {{"OTTER_RELEASE_KEYS", write_release_keys().string()}, {"OTTER_REQUIRE_SIGNED", "1"}});
  const std::string bytes = "firmware " + random_hex(8);
  const auto sha = upload(bytes);

  struct bad_case {
    const char* name;
    std::optional<std::string> sig;
    const char* needle;
  };
  const crypto::ec_key stranger = crypto::ec_key::generate();
  const std::vector<bad_case> cases = {
      {"unsigned", std::nullopt, "OTTER_REQUIRE_SIGNED"},
      {"unknown key", image_sig(stranger, bytes), "does not verify"},
      {"other image", image_sig(release_, bytes + "x"), "does not verify"},
      {"not 64 bytes", crypto::base64url_encode(std::string(48, 'a')), "64-byte"},
  };
  for (const auto& c : cases) {
    auto r = add("3.0.0", sha, c.sig);
    EXPECT_EQ(r["ok"], false) << c.name << ": " << r.dump();
    EXPECT_EQ(r["error"]["code"], "bad_request") << c.name << ": " << r.dump();
    EXPECT_NE(r["error"].value("message", "").find(c.needle), std::string::npos)
        << c.name << ": " << r.dump();
  }
  auto none = admin_->cmd("release.get", {{"model", kModel}, {"version", "3.0.0"}});
  EXPECT_EQ(none["error"]["code"], "not_found") << none.dump();
  // The other key in the file signs too.
  auto ok = add("3.0.0", sha, image_sig(other_, bytes));
  EXPECT_EQ(ok["ok"], true) << ok.dump();
}

TEST_F(release_test, without_release_keys_a_signature_is_stored_unchecked) {
  const std::string bytes = "firmware " + random_hex(8);
  const auto sha = upload(bytes);
  const auto sig = image_sig(crypto::ec_key::generate(), bytes);
  auto r = add("4.0.0", sha, sig);
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["result"]["image_sig"], sig);
  auto unsigned_ok = add("4.0.1", sha, std::nullopt);
  EXPECT_EQ(unsigned_ok["ok"], true) << unsigned_ok.dump();
  EXPECT_EQ(unsigned_ok["result"]["signed"], false);
}

TEST_F(release_test, gc_removes_old_unreferenced_uploads_and_keeps_the_rest) {
  restart_with({{"OTTER_UPLOAD_GC", "1m"}});
  const std::string old_bytes = "old unreferenced " + random_hex(8);
  const std::string kept_bytes = "old released " + random_hex(8);
  const std::string fresh_bytes = "fresh unreferenced " + random_hex(8);
  const auto old_sha = upload(old_bytes);
  const auto kept_sha = upload(kept_bytes);
  const auto fresh_sha = upload(fresh_bytes);
  // The same image again is stored once.
  EXPECT_EQ(upload(old_bytes), old_sha);
  ASSERT_EQ(add("5.0.0", kept_sha, std::nullopt)["ok"], true);

  // Age two of them past OTTER_UPLOAD_GC; collection also runs when otterd starts.
  {
    pqxx::connection c{db_->url()};
    pqxx::work tx{c};
    tx.exec_params0(
        "UPDATE uploads SET created_at = now() - interval '1 hour' "
        "WHERE sha256 IN ($1, $2)",
        old_sha, kept_sha);
    tx.commit();
  }
  restart_with({{"OTTER_UPLOAD_GC", "1m"}});

  const auto images = dir_ / "data" / "images";
  for (int i = 0; i < 100 && fs::exists(images / old_sha); ++i) std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(fs::exists(images / old_sha));
  EXPECT_TRUE(fs::exists(images / kept_sha));
  EXPECT_TRUE(fs::exists(images / fresh_sha));
  {
    pqxx::connection c{db_->url()};
    pqxx::read_transaction tx{c};
    EXPECT_EQ(
        tx.exec_params1("SELECT count(*) FROM uploads WHERE sha256 = $1", old_sha)[0].as<int>(), 0);
    // Per image, not a total: other otterds on a shared test broker may add uploads here.
    for (const auto& sha : {kept_sha, fresh_sha})
      EXPECT_EQ(tx.exec_params1("SELECT count(*) FROM uploads WHERE sha256 = $1", sha)[0].as<int>(),
                1);
  }
  auto gone = add("5.0.1", old_sha, std::nullopt);
  EXPECT_EQ(gone["error"]["code"], "not_found") << gone.dump();
  EXPECT_EQ(add("5.0.2", fresh_sha, std::nullopt)["ok"], true);
  EXPECT_NE(otterd_->log().find("decision=upload_gc_removed sha256=" + old_sha), std::string::npos);
  // Uploading it again brings it back.
  EXPECT_EQ(upload(old_bytes), old_sha);
  EXPECT_EQ(add("5.0.1", old_sha, std::nullopt)["ok"], true);
}

}  // namespace
}  // namespace otter::test
