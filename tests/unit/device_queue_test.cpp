// The device queue: a device's messages in order on one worker, and a cap on what one device
// may have waiting, so a device sending in a loop cannot make everyone else wait.
#include "service/device_queue.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace otter::service {
namespace {

using namespace std::chrono_literals;

protocol::parsed_topic from(const std::string& device,
                            protocol::topic_kind kind = protocol::topic_kind::device_check) {
  return protocol::parsed_topic{kind, device, true, "", false};
}

// A handler the test holds closed until it opens it, recording what it handled.
struct gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  std::vector<std::string> handled;

  device_queue::handler handler() {
    return [this](const protocol::parsed_topic& t, std::string_view payload) {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return open; });
      handled.push_back(t.subject + ":" + std::string(payload));
      cv.notify_all();
    };
  }
  void let_through() {
    std::lock_guard lock(mu);
    open = true;
    cv.notify_all();
  }
  bool wait_for(std::size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 5s, [&] { return handled.size() >= n; });
  }
};

TEST(device_queue, one_device_is_capped_the_others_are_not) {
  gate g;
  device_queue q(1, 1000, g.handler(), 4);
  q.start();
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(q.submit(from("loud"), std::to_string(i)), device_queue::admit::queued) << i;
  EXPECT_EQ(q.submit(from("loud"), "4"), device_queue::admit::device_busy);
  // Status reports get no answer a device could wait for: their cap is 8 times larger, but
  // there is one, or a device reporting in a loop would fill the worker's queue.
  const auto status = from("loud", protocol::topic_kind::device_status);
  EXPECT_EQ(q.submit(status, "s"), device_queue::admit::queued);
  for (int i = 1; i < 4 * 8 - 4; ++i)
    EXPECT_EQ(q.submit(status, "s" + std::to_string(i)), device_queue::admit::queued) << i;
  EXPECT_EQ(q.submit(status, "s-too-many"), device_queue::admit::device_busy);
  EXPECT_EQ(q.submit(from("quiet"), "q"), device_queue::admit::queued);
  g.let_through();
  ASSERT_TRUE(g.wait_for(4 * 8 + 1));
  // Handled: room again, and everything in the order it came.
  for (int i = 0; i < 200 && q.submit(from("loud"), "5") != device_queue::admit::queued; ++i)
    std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(g.wait_for(4 * 8 + 2));
  q.stop();
  std::lock_guard lock(g.mu);
  std::vector<std::string> expected = {"loud:0", "loud:1", "loud:2", "loud:3", "loud:s"};
  for (int i = 1; i < 4 * 8 - 4; ++i) expected.push_back("loud:s" + std::to_string(i));
  expected.push_back("quiet:q");
  expected.push_back("loud:5");
  EXPECT_EQ(g.handled, expected);
}

TEST(device_queue, stop_handles_what_is_queued_then_refuses) {
  gate g;
  g.let_through();
  device_queue q(2, 100, g.handler());
  q.start();
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(q.submit(from("d" + std::to_string(i)), "x"), device_queue::admit::queued);
  q.stop();
  EXPECT_EQ(g.handled.size(), 10u);
  EXPECT_EQ(q.submit(from("late"), "x"), device_queue::admit::stopping);
}

// A posted task runs on the device's worker, after the messages queued before it.
TEST(device_queue, a_posted_task_runs_in_order_with_the_devices_messages) {
  gate g;
  device_queue q(2, 100, g.handler());
  q.start();
  ASSERT_EQ(q.submit(from("d1"), "a"), device_queue::admit::queued);
  ASSERT_TRUE(q.post("d1", [&] {
    std::lock_guard lock(g.mu);
    g.handled.push_back("d1:task");
    g.cv.notify_all();
  }));
  ASSERT_EQ(q.submit(from("d1"), "b"), device_queue::admit::queued);
  g.let_through();
  ASSERT_TRUE(g.wait_for(3));
  q.stop();
  EXPECT_EQ(g.handled, (std::vector<std::string>{"d1:a", "d1:task", "d1:b"}));
  EXPECT_FALSE(q.post("d1", [] {})) << "stopping";
}

TEST(device_queue, posted_tasks_do_not_count_towards_the_devices_cap) {
  gate g;
  device_queue q(1, 1000, g.handler(), 2);
  q.start();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(q.post("d1", [] {}));
  EXPECT_EQ(q.submit(from("d1"), "a"), device_queue::admit::queued);
  EXPECT_EQ(q.submit(from("d1"), "b"), device_queue::admit::queued);
  EXPECT_EQ(q.submit(from("d1"), "c"), device_queue::admit::device_busy);
  g.let_through();
  q.stop();
}

}  // namespace
}  // namespace otter::service
