// The portable device core (firmware-examples/core) end to end: otter-device-host, built on it,
// updates itself through otterd and the stack as a device in the field would.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "crypto/hash.hpp"
#include "support/files.hpp"
#include "support/harness.hpp"

namespace otter::test {
namespace {

using json = nlohmann::json;

const std::string kModel = "esp32-devkitc";

class device_core_e2e : public otter_fixture {
 protected:
  // Runs the host device; `extra` are more flags.
  run_result run_device(const std::string& id, const std::vector<std::string>& extra = {}) {
    const auto pub = scratch_file("manifest.pub", pub_->public_pem());
    std::vector<std::string> argv = {OTTER_DEVICE_HOST_PATH,
                                     "--mqtt",
                                     env_.mqtt_url,
                                     "--id",
                                     id,
                                     "--model",
                                     kModel,
                                     "--version",
                                     "1.0.0",
                                     "--pubkey",
                                     pub,
                                     "--slot",
                                     (dir_ / (id + ".slot")).string(),
                                     "--state-dir",
                                     (dir_ / (id + ".state")).string(),
                                     "--timeout",
                                     "120"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run_command(argv);
  }
  std::string slot(const std::string& id) { return read_file(dir_ / (id + ".slot")); }
  // The device's status reports, oldest first.
  std::vector<json> statuses(const std::string& id) {
    auto r = admin_->cmd("status.list", {{"device", id}});
    EXPECT_EQ(r.value("ok", false), true) << r.dump();
    std::vector<json> out;
    for (const auto& s : r["result"]["items"]) out.insert(out.begin(), s);
    return out;
  }
};

TEST_F(device_core_e2e, updates_with_small_chunks_reports_success_and_is_then_up_to_date) {
  const auto image = random_image(300'000, 11);
  add_release(kModel, "1.1.0", image);
  const auto rollout = create_rollout(kModel, "1.1.0", {{"type", "all"}});
  auto r = run_device("fw-e2e-1", {"--chunk", "1024", "--window", "4"});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("reported success for 1.1.0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("up to date at 1.1.0"), std::string::npos) << r.output;
  EXPECT_EQ(slot("fw-e2e-1"), image);

  const auto st = statuses("fw-e2e-1");
  ASSERT_FALSE(st.empty());
  EXPECT_EQ(st.back()["state"], "success");
  EXPECT_EQ(st.back()["version"], "1.1.0");
  EXPECT_EQ(st.back()["rollout"], rollout);
  std::vector<std::string> states;
  for (const auto& s : st)
    if (states.empty() || states.back() != s["state"]) states.push_back(s["state"]);
  EXPECT_EQ(states,
            (std::vector<std::string>{"downloading", "verifying", "installing", "success"}));
  auto dev = admin_->cmd("device.get", {{"id", "fw-e2e-1"}});
  EXPECT_EQ(dev["result"]["version"], "1.1.0") << dev.dump();

  // Started again, it runs 1.1.0 from its state dir and has nothing to do.
  auto again = run_device("fw-e2e-1", {"--chunk", "1024", "--window", "4"});
  EXPECT_EQ(again.status, 0) << again.output;
  EXPECT_NE(again.output.find("up to date at 1.1.0"), std::string::npos) << again.output;
  EXPECT_EQ(again.output.find("offered"), std::string::npos) << again.output;
}

TEST_F(device_core_e2e, an_interrupted_download_resumes_from_the_slot) {
  const auto image = random_image(300'000, 12);
  add_release(kModel, "1.1.0", image);
  create_rollout(kModel, "1.1.0", {{"type", "all"}});
  auto cut = run_device("fw-e2e-2", {"--chunk", "4096", "--window", "8", "--stop-after", "150000"});
  ASSERT_EQ(cut.status, 3) << cut.output;
  const auto partial = slot("fw-e2e-2");
  ASSERT_GE(partial.size(), 150'000u);
  ASSERT_LT(partial.size(), image.size());
  EXPECT_EQ(partial, image.substr(0, partial.size()));

  auto r = run_device("fw-e2e-2", {"--chunk", "4096", "--window", "8"});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("resuming at " + std::to_string(partial.size())), std::string::npos)
      << r.output;
  EXPECT_EQ(slot("fw-e2e-2"), image);
  const auto st = statuses("fw-e2e-2");
  ASSERT_FALSE(st.empty());
  EXPECT_EQ(st.back()["state"], "success");
  EXPECT_EQ(st.back()["version"], "1.1.0");
}

TEST_F(device_core_e2e, a_pinned_release_key_checks_image_sig) {
  const auto image = random_image(50'000, 13);
  auto release = crypto::ec_key::generate();
  const auto digest = crypto::sha256(image);
  const auto sig = release.sign_digest(std::span<const std::uint8_t, 32>(digest));
  add_release(kModel, "1.1.0", image,
              {{"image_sig", crypto::base64url_encode(std::span<const std::uint8_t>(sig))}});
  create_rollout(kModel, "1.1.0", {{"type", "all"}});
  const auto good_key = scratch_file("release.pub", release.public_pem());
  const auto wrong_key = scratch_file("wrong.pub", crypto::ec_key::generate().public_pem());

  auto bad = run_device("fw-e2e-3", {"--release-key", wrong_key});
  EXPECT_EQ(bad.status, 1) << bad.output;
  EXPECT_NE(bad.output.find("image_sig"), std::string::npos) << bad.output;
  auto st = statuses("fw-e2e-3");
  ASSERT_FALSE(st.empty());
  EXPECT_EQ(st.back()["state"], "failed");
  EXPECT_NE(st.back()["error"].get<std::string>().find("image_sig"), std::string::npos);

  auto good = run_device("fw-e2e-4", {"--release-key", good_key});
  ASSERT_EQ(good.status, 0) << good.output;
  EXPECT_EQ(slot("fw-e2e-4"), image);
  EXPECT_EQ(statuses("fw-e2e-4").back()["state"], "success");
}

TEST_F(device_core_e2e, a_manifest_signed_by_another_key_is_rejected) {
  add_release(kModel, "1.1.0", random_image(10'000, 14));
  create_rollout(kModel, "1.1.0", {{"type", "all"}});
  const auto other = scratch_file("other.pub", crypto::ec_key::generate().public_pem());
  auto r = run_device("fw-e2e-5", {"--pubkey", other});
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("kid"), std::string::npos) << r.output;
  const auto st = statuses("fw-e2e-5");
  ASSERT_FALSE(st.empty());
  EXPECT_EQ(st.back()["state"], "rejected");
}

}  // namespace
}  // namespace otter::test
