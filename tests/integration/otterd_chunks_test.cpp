// MQTT download (PROTOCOL.md "chunk request"): windowed requests, resume, many devices at once,
// and every refusal.
#include <gtest/gtest.h>

#include <pqxx/pqxx>
#include <random>
#include <thread>

#include "crypto/hash.hpp"
#include "support/harness.hpp"

namespace otter::test {
namespace {

const std::string kModel = "esp32-devkitc";

// Fetches [from, size) by windows of `count` chunks of `len` bytes; appends to `image`.
// Stops early after `stop_after` bytes when given.
bool download(device& d, const nlohmann::json& claims, std::string& image, std::uint32_t len,
              std::uint32_t count, std::uint64_t stop_after = UINT64_MAX) {
  const std::string file = claims["chunk"]["file"];
  const std::uint64_t size = claims["size"];
  int req = 0;
  while (image.size() < size && image.size() < stop_after) {
    const std::uint64_t offset = image.size();
    nlohmann::json r = {{"req", "k-" + std::to_string(++req)},
                        {"file", file},
                        {"offset", offset},
                        {"len", len},
                        {"count", count}};
    d.mqtt().publish("ota/v1/dev/" + d.id() + "/up/chunk", r.dump());
    for (std::uint32_t i = 0; i < count && image.size() < size; ++i) {
      const auto at = offset + std::uint64_t(i) * len;
      auto m = d.mqtt().wait(
          "ota/v1/dev/" + d.id() + "/down/chunk/" + file + "/" + std::to_string(at), 10s);
      if (!m) return false;
      const auto expect = std::min<std::uint64_t>(len, size - at);
      if (m->payload.size() != expect) return false;
      image += m->payload;
    }
  }
  return true;
}

class chunks_test : public otter_fixture {};

TEST_F(chunks_test, a_device_downloads_an_image_by_windowed_chunks_and_resumes) {
  const auto image = random_image(1'500'000, 7);
  const auto rel = add_release(kModel, "1.1.0", image);
  create_rollout(kModel, "1.1.0", {{"type", "all"}});
  std::string got;
  {
    device d(env_, *topics_, "dl-1");
    d.connect_started();
    auto o = d.check(*pub_, kModel, "1.0.0");
    ASSERT_TRUE(o && o->signature_ok);
    ASSERT_TRUE(download(d, o->claims, got, 4096, 16, 700'000));
  }  // disconnected half-way
  device d(env_, *topics_, "dl-1");
  d.connect_started();
  auto o = d.check(*pub_, kModel, "1.0.0");
  ASSERT_TRUE(o);
  ASSERT_TRUE(download(d, o->claims, got, 4096, 16));
  ASSERT_EQ(got.size(), image.size());
  EXPECT_EQ(crypto::sha256_hex(got), rel["sha256"]);
  EXPECT_EQ(crypto::sha256_hex(got), o->claims["sha256"]);
  // Start, each quarter and the end are recorded, not every chunk.
  auto ev = admin_->cmd("events.list", {{"device", "dl-1"}, {"kind", "chunk"}});
  std::set<int> progress;
  for (const auto& e : ev["result"]["items"]) progress.insert(e["data"]["progress"].get<int>());
  EXPECT_EQ(progress, (std::set<int>{0, 25, 50, 75, 100})) << ev.dump();
}

TEST_F(chunks_test, a_restarted_service_keeps_serving_recent_offers_only) {
  const auto image = random_image(200'000, 11);
  const auto rel = add_release(kModel, "1.1.0", image);
  create_rollout(kModel, "1.1.0", {{"type", "all"}});
  device d(env_, *topics_, "dl-restart");
  d.connect_started();
  auto o = d.check(*pub_, kModel, "1.0.0");
  ASSERT_TRUE(o && o->signature_ok);
  std::string got;
  ASSERT_TRUE(download(d, o->claims, got, 4096, 16, 100'000));

  // A restart (a deploy, a crash): the offer is in PostgreSQL, so the download goes on
  // without a new check.
  admin_.reset();
  ASSERT_EQ(stop_otterd(), 0);
  start_otterd();
  ASSERT_TRUE(download(d, o->claims, got, 4096, 16)) << d.wait_error(1s).value_or(nullptr).dump();
  EXPECT_EQ(crypto::sha256_hex(got), rel["sha256"]);
  EXPECT_NE(otterd_->log().find("decision=chunk_grants_restored"), std::string::npos);

  // Offers older than the manifest TTL are not restored: that device must check again.
  ASSERT_EQ(stop_otterd(), 0);
  {
    pqxx::connection c{db_->url()};
    pqxx::work tx{c};
    tx.exec0(
        "UPDATE events SET at = at - interval '2 hours' "
        "WHERE device = 'dl-restart' AND kind = 'offer'");
    tx.commit();
  }
  start_otterd();
  const nlohmann::json req = {{"req", "k-old"},
                              {"file", o->claims["chunk"]["file"]},
                              {"offset", 0},
                              {"len", 4096},
                              {"count", 1}};
  d.mqtt().publish("ota/v1/dev/dl-restart/up/chunk", req.dump());
  auto err = d.wait_error();
  ASSERT_TRUE(err);
  EXPECT_EQ((*err)["code"], "forbidden") << err->dump();
  EXPECT_EQ((*err)["req"], "k-old");
}

TEST_F(chunks_test, fifty_devices_download_at_once) {
  const auto image = random_image(200'000, 9);
  const auto rel = add_release(kModel, "1.2.0", image);
  create_rollout(kModel, "1.2.0", {{"type", "all"}});
  std::vector<std::unique_ptr<device>> fleet;
  for (int i = 0; i < 50; ++i)
    fleet.push_back(std::make_unique<device>(env_, *topics_, "many-" + std::to_string(i)));
  for (auto& d : fleet) d->connect_started();
  std::vector<std::string> images(fleet.size());
  std::vector<int> ok(fleet.size(), 0);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < fleet.size(); ++i) {
    threads.emplace_back([&, i] {
      auto o = fleet[i]->check(*pub_, kModel, "1.0.0");
      ok[i] = o && o->signature_ok && download(*fleet[i], o->claims, images[i], 4096, 16) &&
              crypto::sha256_hex(images[i]) == rel["sha256"];
    });
  }
  for (auto& t : threads) t.join();
  for (std::size_t i = 0; i < fleet.size(); ++i) EXPECT_TRUE(ok[i]) << fleet[i]->id();
}

TEST_F(chunks_test, chunk_request_errors) {
  const auto image = random_image(10'000, 3);
  add_release(kModel, "1.3.0", image);
  create_rollout(kModel, "1.3.0", {{"type", "devices"}, {"ids", {"ch-a"}}});
  device a(env_, *topics_, "ch-a");
  device b(env_, *topics_, "ch-b");
  a.connect_started();
  b.connect_started();
  auto o = a.check(*pub_, kModel, "1.0.0");
  ASSERT_TRUE(o && o->answer["update"] == true);
  const std::string file = o->claims["chunk"]["file"];
  struct err_case {
    const char* name;
    device* dev;
    nlohmann::json req;
    const char* code;
  };
  const std::vector<err_case> cases = {
      {"len above max",
       &a,
       {{"req", "e1"}, {"file", file}, {"offset", 0}, {"len", 4097}, {"count", 1}},
       "bad_request"},
      {"count above window",
       &a,
       {{"req", "e2"}, {"file", file}, {"offset", 0}, {"len", 64}, {"count", 17}},
       "bad_request"},
      {"offset at end",
       &a,
       {{"req", "e3"}, {"file", file}, {"offset", 10000}, {"len", 64}, {"count", 1}},
       "range"},
      {"unknown file",
       &a,
       {{"req", "e4"}, {"file", "0123456789abcdef"}, {"offset", 0}, {"len", 64}, {"count", 1}},
       "forbidden"},
      {"not offered to this device",
       &b,
       {{"req", "e5"}, {"file", file}, {"offset", 0}, {"len", 64}, {"count", 1}},
       "forbidden"},
      {"bad file id",
       &a,
       {{"req", "e6"}, {"file", "xyz"}, {"offset", 0}, {"len", 64}, {"count", 1}},
       "bad_request"},
      {"negative offset",
       &a,
       {{"req", "e7"}, {"file", file}, {"offset", -1}, {"len", 64}, {"count", 1}},
       "bad_request"},
  };
  for (const auto& c : cases) {
    auto err = c.dev->send_raw("chunk", c.req.dump(), topics_->error(c.dev->id()));
    ASSERT_TRUE(err) << c.name;
    EXPECT_EQ((*err)["code"], c.code) << c.name << ": " << err->dump();
    EXPECT_EQ((*err)["req"], c.req["req"]) << c.name;
  }
  // The last chunk is short, and nothing is sent past the end.
  std::string got(9984, '\0');  // everything but the last 16 bytes
  got.clear();
  got.append(image.substr(0, 9984));
  ASSERT_TRUE(download(a, o->claims, got, 64, 4));
  EXPECT_EQ(got, image);
}

TEST_F(chunks_test, an_image_that_cannot_be_read_is_internal_with_the_req_and_recorded) {
  const auto image = random_image(5'000, 5);
  auto rel = add_release(kModel, "1.4.0", image);
  create_rollout(kModel, "1.4.0", {{"type", "all"}});
  device a(env_, *topics_, "ch-gone");
  a.connect_started();
  auto o = a.check(*pub_, kModel, "1.0.0");
  ASSERT_TRUE(o && o->answer["update"] == true);
  // An operator's mistake on the server: the stored image disappears.
  const auto stored = dir_ / "data" / "images" / rel["sha256"].get<std::string>();
  ASSERT_TRUE(std::filesystem::exists(stored)) << stored;
  std::filesystem::rename(stored, dir_ / "moved-away");
  const nlohmann::json req = {
      {"req", "k-gone"}, {"file", o->claims["chunk"]["file"]}, {"offset", 0}, {"len", 64}};
  auto err = a.send_raw("chunk", req.dump(), topics_->error("ch-gone"));
  ASSERT_TRUE(err);
  EXPECT_EQ((*err)["code"], "internal") << err->dump();
  EXPECT_EQ((*err)["req"], "k-gone") << err->dump();
  auto events = admin_->cmd("events.list", {{"device", "ch-gone"}, {"kind", "error"}});
  ASSERT_EQ(events["result"]["items"].size(), 1u) << events.dump();
  EXPECT_EQ(events["result"]["items"][0]["data"]["code"], "internal");
}

}  // namespace
}  // namespace otter::test
