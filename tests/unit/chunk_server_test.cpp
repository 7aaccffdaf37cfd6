// The chunk server's memory bound: a slow broker (an outbox without room) holds requests back
// in the server, where they cost no memory, and the in-flight caps then refuse more with
// rate_limited; once there is room again, everything requested goes out.
#include <gtest/gtest.h>

#include <functional>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "service/chunk_server.hpp"
#include "service/clock.hpp"
#include "service/image_store.hpp"
#include "service/metrics.hpp"
#include "service/ports.hpp"
#include "support/files.hpp"

namespace otter::service {
namespace {

using namespace std::chrono_literals;

// An outbox whose room the test opens and closes, and which keeps what was published.
class gated_outbox final : public outbox {
 public:
  void publish(const std::string& topic, std::string_view payload, int, bool) override {
    std::lock_guard lock(mu_);
    published_.push_back({topic, std::string(payload)});
    cv_.notify_all();
  }
  bool wait_for_room(std::chrono::milliseconds timeout) override {
    std::unique_lock lock(mu_);
    ++waits_;
    cv_.notify_all();
    return cv_.wait_for(lock, timeout, [&] { return open_; });
  }
  void set_open(bool open) {
    std::lock_guard lock(mu_);
    open_ = open;
    cv_.notify_all();
  }
  std::size_t published() {
    std::lock_guard lock(mu_);
    return published_.size();
  }
  int waits() {
    std::lock_guard lock(mu_);
    return waits_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = true;
  int waits_ = 0;
  std::vector<std::pair<std::string, std::string>> published_;
};

// Keeps the progress of the chunk events the server records.
class progress_recorder final : public recorder {
 public:
  bool submit(store::record_set&& set) override {
    std::lock_guard lock(mu_);
    for (const auto& e : set.events) progress_.push_back(e.data.value("progress", -1));
    return true;
  }
  std::vector<int> progress() {
    std::lock_guard lock(mu_);
    return progress_;
  }

 private:
  std::mutex mu_;
  std::vector<int> progress_;
};

class chunk_server_test : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("otter-chunks-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    images_ = std::make_unique<image_store>(dir_);
    images_->open();
    auto stored = images_->put(std::string(256 * 1024, 'z'));
    ASSERT_TRUE(stored);
    sha_ = stored->sha256;
    file_ = sha_.substr(0, 16);
  }
  void TearDown() override {
    if (server_) server_->stop();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }
  void make(chunk_settings s) {
    server_ = std::make_unique<chunk_server>(topics_, *images_, out_, records_, clock_, counters_,
                                             s, "test");
  }
  // Late refusals the server reports, as "device/req" and the error.
  void collect_refusals() {
    server_->on_late_refusal(
        [this](const std::string& device, const std::optional<std::string>& req, const error& err) {
          std::lock_guard lock(refused_mu_);
          refused_.emplace_back(device + "/" + req.value_or("-"), err);
        });
  }
  std::vector<std::pair<std::string, error>> refused() {
    std::lock_guard lock(refused_mu_);
    return refused_;
  }
  result<void> ask(const std::string& device, std::uint64_t offset, std::uint32_t count) {
    protocol::chunk_request_msg m;
    m.req = "k-" + std::to_string(offset);
    m.file = file_;
    m.offset = offset;
    m.len = 4096;
    m.count = count;
    return server_->request(device, m);
  }

  protocol::topics topics_{"ota/v1"};
  std::filesystem::path dir_;
  std::unique_ptr<image_store> images_;
  gated_outbox out_;
  progress_recorder records_;
  manual_clock clock_{std::chrono::system_clock::now()};
  metrics counters_;
  std::unique_ptr<chunk_server> server_;
  std::string sha_, file_;
  std::mutex refused_mu_;
  std::vector<std::pair<std::string, error>> refused_;
};

TEST_F(chunk_server_test, a_broker_without_room_holds_requests_back_and_the_caps_refuse_more) {
  chunk_settings s;
  s.workers = 1;
  s.device_inflight_cap = 64 * 1024;  // one request of 16 x 4 KiB per device at a time
  s.total_inflight_cap = 3 * 64 * 1024;
  s.room_wait = 10s;
  make(s);
  server_->start();
  for (const char* d : {"d1", "d2", "d3", "d4"}) server_->authorize(d, sha_, 256 * 1024, 1);

  out_.set_open(false);
  ASSERT_TRUE(ask("d1", 0, 16));
  // The worker reads the first chunk and then waits for room: nothing is published.
  for (int i = 0; i < 200 && out_.waits() == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_GT(out_.waits(), 0);
  EXPECT_EQ(out_.published(), 0u);

  // d1's request is still in flight: its cap refuses a second one.
  auto again = ask("d1", 65536, 16);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, errc::rate_limited);
  // Other devices fill the total cap; the next one is refused, with nothing published.
  EXPECT_TRUE(ask("d2", 0, 16));
  EXPECT_TRUE(ask("d3", 0, 16));
  auto busy = ask("d4", 0, 16);
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code, errc::rate_limited);
  EXPECT_EQ(out_.published(), 0u);
  EXPECT_EQ(server_->inflight_bytes(), 3u * 64 * 1024);

  // Room again: every accepted request goes out in full, and the credits come back.
  out_.set_open(true);
  for (int i = 0; i < 500 && (out_.published() < 48 || server_->inflight_bytes() > 0); ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(out_.published(), 48u);
  EXPECT_EQ(server_->inflight_bytes(), 0u);
  EXPECT_TRUE(ask("d4", 0, 16));
  for (int i = 0; i < 500 && out_.published() < 64; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(out_.published(), 64u);
}

TEST_F(chunk_server_test, a_worker_that_never_gets_room_gives_the_request_up_as_unavailable) {
  chunk_settings s;
  s.workers = 1;
  s.room_wait = 50ms;
  make(s);
  collect_refusals();
  server_->start();
  server_->authorize("d1", sha_, 256 * 1024, 1);
  out_.set_open(false);
  ASSERT_TRUE(ask("d1", 8192, 4));
  for (int i = 0; i < 200 && refused().empty(); ++i) std::this_thread::sleep_for(10ms);
  // The credits come back once the worker is done with the request (just after the refusal).
  for (int i = 0; i < 200 && server_->inflight_bytes() > 0; ++i) std::this_thread::sleep_for(10ms);
  const auto got = refused();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].first, "d1/k-8192");
  EXPECT_EQ(got[0].second.code, errc::unavailable);
  EXPECT_NE(got[0].second.message.find("8192"), std::string::npos) << got[0].second.message;
  EXPECT_EQ(out_.published(), 0u);
  EXPECT_EQ(server_->inflight_bytes(), 0u);
}

// An image file shorter than its release says (damaged on disk): the device is told at once,
// never left waiting, whether the file was short when first opened or shrank later; and a
// repaired file (the image uploaded again) is read again.
TEST_F(chunk_server_test, a_damaged_image_file_is_refused_as_internal_and_a_repaired_one_served) {
  chunk_settings s;
  s.workers = 1;
  make(s);
  collect_refusals();
  const auto refusals = [&] { return refused().size(); };
  const auto wait_for = [&](const std::function<bool()>& pred) {
    for (int i = 0; i < 300 && !pred(); ++i) std::this_thread::sleep_for(10ms);
    return pred();
  };
  server_->start();
  server_->authorize("d1", sha_, 256 * 1024, 1);
  const auto path = images_->path_of(sha_);

  // Short from the start: not opened for good.
  std::filesystem::resize_file(path, 100 * 1024);
  ASSERT_TRUE(ask("d1", 0, 1));
  ASSERT_TRUE(wait_for([&] { return refusals() == 1; }));
  EXPECT_EQ(out_.published(), 0u);

  // Whole again: served, and the descriptor is kept.
  auto again = images_->put(std::string(256 * 1024, 'z'));
  ASSERT_TRUE(again);
  EXPECT_FALSE(again->existed) << "a file of the wrong length must be replaced";
  ASSERT_TRUE(ask("d1", 0, 2));
  ASSERT_TRUE(wait_for([&] { return out_.published() == 2; }));

  // Shrunk while open: a read past the new end is refused, not dropped.
  std::filesystem::resize_file(path, 100 * 1024);
  ASSERT_TRUE(ask("d1", 200 * 1024, 1));
  ASSERT_TRUE(wait_for([&] { return refusals() == 2; }));
  EXPECT_EQ(refused()[1].first, "d1/k-204800");
  EXPECT_EQ(refused()[1].second.code, errc::internal);
  EXPECT_EQ(out_.published(), 2u);
  EXPECT_TRUE(wait_for([&] { return server_->inflight_bytes() == 0; }));
  // Repaired again: the next request opens the file anew and is served.
  ASSERT_TRUE(images_->put(std::string(256 * 1024, 'z')));
  ASSERT_TRUE(ask("d1", 200 * 1024, 1));
  ASSERT_TRUE(wait_for([&] { return out_.published() == 3; }));
  EXPECT_EQ(refusals(), 2u);
}

// Events record a download's start and quarters once per offer; a newer offer of the same
// image (the device checks again after a failed install) is a new download, recorded again.
TEST_F(chunk_server_test, a_newer_offer_of_the_same_image_records_its_progress_again) {
  make(chunk_settings{});
  server_->start();
  server_->authorize("d1", sha_, 256 * 1024, 1);
  const auto wait_published = [&](std::size_t n) {
    for (int i = 0; i < 300 && out_.published() < n; ++i) std::this_thread::sleep_for(10ms);
    return out_.published() == n;
  };
  ASSERT_TRUE(ask("d1", 0, 16));  // the first quarter
  ASSERT_TRUE(wait_published(16));
  ASSERT_TRUE(ask("d1", 0, 16));  // again: nothing new
  ASSERT_TRUE(wait_published(32));
  for (int i = 0; i < 100 && server_->inflight_bytes() > 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(records_.progress(), (std::vector<int>{0, 25}));

  clock_.advance(std::chrono::minutes(1));
  server_->authorize("d1", sha_, 256 * 1024, 1);
  ASSERT_TRUE(ask("d1", 0, 16));
  ASSERT_TRUE(wait_published(48));
  for (int i = 0; i < 100 && server_->inflight_bytes() > 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(records_.progress(), (std::vector<int>{0, 25, 0, 25}));
}

// A restore from the recorded offers (after the listener reconnects) may bring an older offer
// of the same image: it must not take the newer grant back in time.
TEST_F(chunk_server_test, an_older_restored_offer_never_takes_a_newer_grant_back_in_time) {
  make(chunk_settings{});
  server_->start();
  server_->authorize("d1", sha_, 256 * 1024, 2);
  server_->authorize("d1", sha_, 256 * 1024, 1, clock_.now() - std::chrono::minutes(55));
  clock_.advance(std::chrono::minutes(10));
  EXPECT_TRUE(ask("d1", 0, 1)) << "the offer made 10 minutes ago holds for an hour";
  clock_.advance(std::chrono::minutes(51));
  auto late = ask("d1", 0, 1);
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, errc::forbidden);
}

// With shared subscriptions a request may wait for its grant; one device asking in a loop for
// a file it was never offered must not fill the waiting list the other devices need.
TEST_F(chunk_server_test, one_device_cannot_fill_the_list_of_requests_waiting_for_a_grant) {
  chunk_settings s;
  s.grant_wait = 10s;
  s.max_waiting_per_device = 2;
  s.max_waiting = 3;
  make(s);
  server_->start();
  EXPECT_TRUE(ask("d1", 0, 1));
  EXPECT_TRUE(ask("d1", 4096, 1));
  auto third = ask("d1", 8192, 1);
  ASSERT_FALSE(third);
  EXPECT_EQ(third.error().code, errc::rate_limited);
  EXPECT_TRUE(ask("d2", 0, 1)) << "another device still gets its place";
  // The grants arrive: the held requests go out, and d1 may wait again.
  server_->authorize("d1", sha_, 256 * 1024, 1);
  server_->authorize("d2", sha_, 256 * 1024, 1);
  for (int i = 0; i < 500 && out_.published() < 3; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(out_.published(), 3u);
  protocol::chunk_request_msg m;
  m.file = "0123456789abcdef";
  m.offset = 0;
  m.len = 4096;
  m.count = 1;
  EXPECT_TRUE(server_->request("d1", m)) << "d1's places were given back";
}

}  // namespace
}  // namespace otter::service
