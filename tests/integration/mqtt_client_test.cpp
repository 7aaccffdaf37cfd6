// otter::mqtt::client against a real Mosquitto, one private broker per test. Each test pins one
// of the Paho traps the adapter exists to hide.
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "mqtt/client.hpp"
#include "mqtt/nodelay.hpp"
#include "support/broker_process.hpp"

namespace otter::mqtt {
namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

std::string unique_id(const std::string& prefix) {
  static std::atomic<int> counter{0};
  return prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

client_options options_for(const test::broker_process& broker, const std::string& name,
                           int version = 5) {
  client_options o;
  o.server_uri = broker.uri();
  o.client_id = unique_id(name);
  o.mqtt_version = version;
  return o;
}

// Collects what a client receives, for tests to wait on.
class inbox {
 public:
  void attach(client& c) {
    c.on_message([this](const message& m) {
      {
        std::lock_guard lock(mu_);
        messages_.push_back(m);
      }
      cv_.notify_all();
    });
  }

  bool wait_for_count(std::size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return messages_.size() >= n; });
  }

  std::vector<message> messages() const {
    std::lock_guard lock(mu_);
    return messages_;
  }

  std::size_t size() const {
    std::lock_guard lock(mu_);
    return messages_.size();
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<message> messages_;
};

// A subscriber to `filter` with its inbox, and a publisher, both connected (the inbox goes
// last: the subscriber's handler writes to it until the subscriber is gone).
struct sub_and_pub {
  inbox got;
  client sub;
  client pub;
  sub_and_pub(const test::broker_process& broker, const std::string& name,
              const std::string& filter)
      : sub(options_for(broker, name + "-sub")), pub(options_for(broker, name + "-pub")) {
    got.attach(sub);
    EXPECT_TRUE(sub.subscribe(filter, 1).ok());
    EXPECT_TRUE(sub.connect(5s).ok());
    EXPECT_TRUE(pub.connect(5s).ok());
  }
};

struct socket_census {
  int to_broker = 0;
  int with_nodelay = 0;
};

// Every TCP socket of this process whose peer is the broker's port, and how many have
// TCP_NODELAY: checks the fix from the outside, the way the kernel sees it.
socket_census census(std::uint16_t broker_port) {
  socket_census c;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return c;
  while (dirent* e = ::readdir(dir)) {
    int fd = std::atoi(e->d_name);
    if (e->d_name[0] == '.' || fd == ::dirfd(dir)) continue;
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) continue;
    if (peer.ss_family != AF_INET) continue;
    if (ntohs(reinterpret_cast<sockaddr_in*>(&peer)->sin_port) != broker_port) continue;
    int on = 0;
    socklen_t olen = sizeof on;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &olen) != 0) continue;
    ++c.to_broker;
    if (on != 0) ++c.with_nodelay;
  }
  ::closedir(dir);
  return c;
}

std::vector<int> broker_fds(std::uint16_t broker_port) {
  std::vector<int> fds;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return fds;
  while (dirent* e = ::readdir(dir)) {
    int fd = std::atoi(e->d_name);
    if (e->d_name[0] == '.' || fd == ::dirfd(dir)) continue;
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) continue;
    if (peer.ss_family != AF_INET) continue;
    if (ntohs(reinterpret_cast<sockaddr_in*>(&peer)->sin_port) == broker_port) fds.push_back(fd);
  }
  ::closedir(dir);
  return fds;
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = clock_type::now() + timeout;
  while (!pred()) {
    if (clock_type::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

double median_ms(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// A requester and a responder that answers from inside its message handler; returns the round
// trip of each of `rounds` QoS 1 request/answer exchanges in milliseconds.
std::vector<double> measure_round_trips(const test::broker_process& broker, bool nodelay,
                                        int rounds, socket_census* seen = nullptr) {
  auto responder_opts = options_for(broker, "responder");
  responder_opts.tcp_nodelay = nodelay;
  client responder(responder_opts);
  responder.on_message([&responder](const message& m) {
    auto r = responder.publish("rt/answer", m.payload, 1);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  });
  EXPECT_TRUE(responder.subscribe("rt/request", 1).ok());

  auto requester_opts = options_for(broker, "requester");
  requester_opts.tcp_nodelay = nodelay;
  client requester(requester_opts);
  std::mutex mu;
  std::condition_variable cv;
  std::string last_answer;
  requester.on_message([&](const message& m) {
    {
      std::lock_guard lock(mu);
      last_answer = m.payload;
    }
    cv.notify_all();
  });
  EXPECT_TRUE(requester.subscribe("rt/answer", 1).ok());

  auto rc = responder.connect(5s);
  EXPECT_TRUE(rc.ok()) << (rc.ok() ? "" : rc.error().message);
  rc = requester.connect(5s);
  EXPECT_TRUE(rc.ok()) << (rc.ok() ? "" : rc.error().message);
  if (seen != nullptr) *seen = census(broker.port());

  std::vector<double> rtts;
  for (int i = 0; i < rounds + 3; ++i) {  // the first few warm up the connections
    const std::string payload = "req-" + std::to_string(i);
    const auto t0 = clock_type::now();
    EXPECT_TRUE(requester.publish("rt/request", payload, 1).ok());
    std::unique_lock lock(mu);
    if (!cv.wait_for(lock, 5s, [&] { return last_answer == payload; })) {
      ADD_FAILURE() << "no answer to " << payload;
      break;
    }
    const auto dt = std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
    if (i >= 3) rtts.push_back(dt);
  }
  return rtts;
}

TEST(mqtt_client, qos1_round_trip_is_fast_because_sockets_get_nodelay) {
  test::broker_process broker;  // with set_tcp_nodelay, as a deployment should run it
  socket_census fixed{};
  const auto with_fix = measure_round_trips(broker, true, 50, &fixed);
  const auto without_fix = measure_round_trips(broker, false, 20);
  // For the record: the broker's own Nagle costs one delayed ACK per exchange on its own.
  test::broker_process nagle_broker({.tcp_nodelay = false});
  const auto nagle_broker_rtt = measure_round_trips(nagle_broker, true, 20);

  ASSERT_EQ(with_fix.size(), 50u);
  const double fast = median_ms(with_fix);
  std::printf(
      "QoS 1 request/answer median over %zu exchanges: %.3f ms (max %.3f) with TCP_NODELAY, "
      "%.3f ms without; %.3f ms with TCP_NODELAY but a broker without set_tcp_nodelay\n",
      with_fix.size(), fast, *std::max_element(with_fix.begin(), with_fix.end()),
      median_ms(without_fix), median_ms(nagle_broker_rtt));
  RecordProperty("median_ms_nodelay", std::to_string(fast));
  RecordProperty("median_ms_without", std::to_string(median_ms(without_fix)));
  RecordProperty("median_ms_nagle_broker", std::to_string(median_ms(nagle_broker_rtt)));
  EXPECT_EQ(fixed.to_broker, 2);
  EXPECT_EQ(fixed.with_nodelay, 2);
  EXPECT_LT(fast, 20.0);
}

TEST(mqtt_client, many_clients_in_one_process_all_get_nodelay_cheaply) {
  test::broker_process broker;
  constexpr int kClients = 200;
  std::vector<std::unique_ptr<client>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<client>(options_for(broker, "many")));
    ASSERT_TRUE(clients.back()->subscribe("many/" + std::to_string(i), 1).ok());
  }
  const auto before = nodelay::current_stats();
  const auto t0 = clock_type::now();
  for (auto& c : clients) c->start_connect();
  for (auto& c : clients) {
    auto rc = c->wait_connected(20s);
    ASSERT_TRUE(rc.ok()) << rc.error().message;
  }
  const auto ms = std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
  const auto after = nodelay::current_stats();
  const auto scans =
      (after.full_scans - before.full_scans) + (after.incremental_scans - before.incremental_scans);
  const auto probes = after.probes - before.probes;
  auto c = census(broker.port());
  std::printf(
      "%d clients connected and subscribed in %.0f ms; %d/%d broker sockets tuned; %zu scans "
      "(%zu full), %.1f descriptors probed per scan\n",
      kClients, ms, c.with_nodelay, c.to_broker, scans, after.full_scans - before.full_scans,
      scans ? static_cast<double>(probes) / static_cast<double>(scans) : 0.0);
  EXPECT_EQ(c.to_broker, kClients);
  EXPECT_EQ(c.with_nodelay, kClients);
  // Scanning every descriptor on each connect would probe kClients/2 or more on average.
  EXPECT_LT(probes, scans * (kClients / 4));
}

TEST(mqtt_client, publishes_thousands_in_a_tight_loop_without_throwing) {
  // Mosquitto drops QoS 1 messages beyond 1000 queued for a slow subscriber by default.
  test::broker_process broker({.extra_config = "max_queued_messages 0\n"});
  sub_and_pub c(broker, "bulk", "bulk/#");
  ASSERT_FALSE(HasFailure());
  auto& publisher = c.pub;
  auto& got = c.got;

  constexpr int kMessages = 5000;
  int failed = 0;
  std::string first_error;
  for (int i = 0; i < kMessages; ++i) {
    auto r = publisher.publish("bulk/" + std::to_string(i % 10), std::to_string(i), 1);
    if (!r.ok() && failed++ == 0) first_error = r.error().message;
  }
  EXPECT_EQ(failed, 0) << first_error;
  const auto t0 = clock_type::now();
  EXPECT_TRUE(got.wait_for_count(kMessages, 30s)) << "received " << got.size();
  std::printf("%d QoS 1 messages published and received in %.0f ms\n", kMessages,
              std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
  std::set<std::string> distinct;
  for (const auto& m : got.messages()) distinct.insert(m.payload);
  EXPECT_EQ(distinct.size(), static_cast<std::size_t>(kMessages));
}

// What waits for room in the in-flight window is counted, and a bulk sender can wait for it
// to drain (the chunk server does, so a slow broker slows it instead of filling memory).
TEST(mqtt_client, queued_bytes_count_what_waits_for_the_window_and_drain) {
  test::broker_process broker({.extra_config = "max_queued_messages 0\n"});
  auto o = options_for(broker, "window-pub", 4);
  o.max_inflight = 1;  // one unacknowledged message at a time: the rest queue in the client
  client publisher(o);
  ASSERT_TRUE(publisher.connect(5s).ok());
  EXPECT_EQ(publisher.queued_bytes(), 0u);
  const std::string payload(10'000, 'q');
  for (int i = 0; i < 500; ++i) ASSERT_TRUE(publisher.publish("window/x", payload, 1).ok());
  const auto queued = publisher.queued_bytes();
  EXPECT_GT(queued, 0u);
  EXPECT_LE(queued, 500u * payload.size());
  EXPECT_EQ(queued % payload.size(), 0u);
  EXPECT_FALSE(publisher.wait_queued_below(1, 0ms)) << "nothing can have drained yet";
  EXPECT_TRUE(publisher.wait_queued_below(1, 20s)) << publisher.queued_bytes() << " still queued";
  EXPECT_EQ(publisher.queued_bytes(), 0u);
}

TEST(mqtt_client, mqtt5_properties_survive_a_round_trip) {
  test::broker_process broker;
  client subscriber(options_for(broker, "v5-sub", 5));
  inbox got;
  got.attach(subscriber);
  ASSERT_TRUE(subscriber.subscribe("v5/request", 1).ok());
  auto rc = subscriber.connect(5s);
  ASSERT_TRUE(rc.ok()) << rc.error().message;
  client publisher(options_for(broker, "v5-pub", 5));
  ASSERT_TRUE(publisher.connect(5s).ok());

  message m;
  m.topic = "v5/request";
  m.payload = std::string("hello\0world", 11);
  m.qos = 1;
  m.response_topic = "v5/answers/me";
  m.correlation_data = std::string("\x00\x01\xff corr", 8);
  ASSERT_TRUE(publisher.publish(m).ok());
  ASSERT_TRUE(got.wait_for_count(1, 5s));
  const auto r = got.messages().front();
  EXPECT_EQ(r.topic, m.topic);
  EXPECT_EQ(r.payload, m.payload);
  EXPECT_EQ(r.qos, 1);
  EXPECT_FALSE(r.retained);
  EXPECT_EQ(r.response_topic, m.response_topic);
  EXPECT_EQ(r.correlation_data, m.correlation_data);
}

TEST(mqtt_client, mqtt311_clients_work_and_interoperate_with_mqtt5) {
  test::broker_process broker;
  client v4_sub(options_for(broker, "v4-sub", 4));
  inbox got;
  got.attach(v4_sub);
  ASSERT_TRUE(v4_sub.subscribe("mixed/+", 1).ok());
  auto rc = v4_sub.connect(5s);
  ASSERT_TRUE(rc.ok()) << rc.error().message;
  client v4_pub(options_for(broker, "v4-pub", 4));
  ASSERT_TRUE(v4_pub.connect(5s).ok());
  client v5_pub(options_for(broker, "v5-pub", 5));
  ASSERT_TRUE(v5_pub.connect(5s).ok());

  message with_props{.topic = "mixed/a", .payload = "from v4", .qos = 1};
  with_props.response_topic = "ignored/on/3.1.1";
  ASSERT_TRUE(v4_pub.publish(with_props).ok());
  ASSERT_TRUE(got.wait_for_count(1, 5s));
  ASSERT_TRUE(v5_pub.publish("mixed/b", "from v5", 1).ok());
  ASSERT_TRUE(got.wait_for_count(2, 5s));
  auto msgs = got.messages();
  EXPECT_EQ(msgs[0].payload, "from v4");
  EXPECT_EQ(msgs[0].response_topic, "");  // 3.1.1 has no properties to carry it
  EXPECT_EQ(msgs[1].topic, "mixed/b");
  EXPECT_EQ(msgs[1].payload, "from v5");
  EXPECT_EQ(census(broker.port()).with_nodelay, 3);
}

TEST(mqtt_client, reconnects_and_resubscribes_after_broker_restart) {
  test::broker_process broker;
  client subscriber(options_for(broker, "restart-sub"));
  inbox got;
  got.attach(subscriber);
  std::atomic<int> ups{0};
  std::atomic<int> downs{0};
  subscriber.on_state([&](bool up) { ++(up ? ups : downs); });
  ASSERT_TRUE(subscriber.subscribe("restart/topic", 1).ok());
  ASSERT_TRUE(subscriber.connect(5s).ok());
  client publisher(options_for(broker, "restart-pub"));
  ASSERT_TRUE(publisher.connect(5s).ok());
  ASSERT_TRUE(publisher.publish("restart/topic", "before", 1).ok());
  ASSERT_TRUE(got.wait_for_count(1, 5s));
  EXPECT_EQ(ups.load(), 1);

  broker.stop();
  ASSERT_TRUE(eventually([&] { return !subscriber.connected() && !publisher.connected(); }, 5s));
  EXPECT_EQ(downs.load(), 1);
  EXPECT_FALSE(publisher.publish("restart/topic", "while down", 1).ok());
  const auto restarted = clock_type::now();
  broker.start();  // same port, and no memory of the old subscriptions

  // Publish until one gets through: proves reconnect and resubscription together.
  bool delivered = eventually(
      [&] {
        if (publisher.connected()) (void)publisher.publish("restart/topic", "after", 1);
        for (const auto& m : got.messages())
          if (m.payload == "after") return true;
        return false;
      },
      12s);
  const auto secs = std::chrono::duration<double>(clock_type::now() - restarted).count();
  std::printf("message delivered again %.1f s after the broker restarted\n", secs);
  ASSERT_TRUE(delivered);
  EXPECT_LT(secs, 10.0);
  EXPECT_EQ(ups.load(), 2);
  auto c = census(broker.port());
  EXPECT_EQ(c.to_broker, 2);
  EXPECT_EQ(c.with_nodelay, 2) << "reconnected sockets must get TCP_NODELAY too";
}

TEST(mqtt_client, first_connect_keeps_retrying_until_the_broker_appears) {
  test::broker_process broker;
  broker.stop();
  client c(options_for(broker, "early"));
  auto rc = c.connect(500ms);
  ASSERT_FALSE(rc.ok());
  EXPECT_EQ(rc.error().code, errc::unavailable);
  broker.start();
  rc = c.wait_connected(10s);
  EXPECT_TRUE(rc.ok()) << rc.error().message;
}

TEST(mqtt_client, publish_when_disconnected_returns_an_error_instead_of_throwing) {
  test::broker_process broker;
  client c(options_for(broker, "offline"));
  auto r = c.publish("x/y", "never connected", 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::unavailable);
  EXPECT_FALSE(r.error().message.empty());

  ASSERT_TRUE(c.connect(5s).ok());
  EXPECT_TRUE(c.publish("x/y", "connected", 1).ok());
  EXPECT_EQ(c.publish("x/y", "bad qos", 3).error().code, errc::bad_request);

  broker.stop();
  ASSERT_TRUE(eventually([&] { return !c.connected(); }, 5s));
  r = c.publish("x/y", "broker gone", 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::unavailable);

  broker.start();
  ASSERT_TRUE(c.wait_connected(10s).ok());
  c.disconnect(1s);
  EXPECT_FALSE(c.connected());
  r = c.publish("x/y", "after disconnect", 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::unavailable);
}

// otterd unsubscribes before it drains at shutdown: after the answer nothing more arrives, and
// a reconnect does not subscribe again.
TEST(mqtt_client, unsubscribe_stops_delivery_and_survives_a_reconnect) {
  test::broker_process broker;
  sub_and_pub c(broker, "unsub", "u/#");
  ASSERT_FALSE(HasFailure());
  auto& got = c.got;  // (not a structured binding: clang 14 cannot capture one in a lambda)
  auto& sub = c.sub;
  auto& pub = c.pub;
  ASSERT_TRUE(pub.publish("u/1", "before", 1).ok());
  ASSERT_TRUE(got.wait_for_count(1, 5s));
  ASSERT_TRUE(sub.unsubscribe("u/#", 5s).ok());
  ASSERT_TRUE(pub.publish("u/2", "after", 1).ok());
  std::this_thread::sleep_for(500ms);  // on a live connection, nothing more arrives
  ASSERT_EQ(got.size(), 1u) << got.messages().back().payload;
  broker.stop();
  broker.start();
  ASSERT_TRUE(eventually([&] { return sub.connected() && pub.connected(); }, 15s));
  ASSERT_TRUE(pub.publish("u/3", "after reconnect", 1).ok());
  std::this_thread::sleep_for(500ms);
  ASSERT_EQ(got.size(), 1u) << got.messages().back().payload;
  EXPECT_TRUE(sub.unsubscribe("never/subscribed", 5s).ok());
}

TEST(mqtt_client, handler_can_publish_and_subscribe_from_inside_the_callback) {
  test::broker_process broker;
  client echo(options_for(broker, "echo"));
  echo.on_message([&echo](const message& m) {
    if (m.topic == "echo/in") {
      // Neither may block here: this is Paho's callback thread.
      EXPECT_TRUE(echo.subscribe("echo/late", 1).ok());
      EXPECT_TRUE(echo.publish("echo/out", "echo:" + m.payload, 1).ok());
    }
  });
  ASSERT_TRUE(echo.subscribe("echo/in", 1).ok());
  ASSERT_TRUE(echo.connect(5s).ok());

  client caller(options_for(broker, "caller"));
  inbox got;
  got.attach(caller);
  ASSERT_TRUE(caller.subscribe("echo/out", 1).ok());
  ASSERT_TRUE(caller.connect(5s).ok());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(caller.publish("echo/in", std::to_string(i), 1).ok());
  ASSERT_TRUE(got.wait_for_count(10, 5s));
  auto msgs = got.messages();
  for (int i = 0; i < 10; ++i) EXPECT_EQ(msgs[i].payload, "echo:" + std::to_string(i));
}

TEST(mqtt_client, will_is_published_when_the_connection_breaks_and_the_client_comes_back) {
  test::broker_process broker;
  auto service_opts = options_for(broker, "service");
  service_opts.will =
      message{.topic = "svc/state", .payload = "offline", .qos = 1, .retained = true};
  client service(service_opts);
  std::atomic<int> ups{0};
  service.on_state([&](bool up) {
    if (up && ++ups > 0) (void)service.publish("svc/state", "online", 1, true);
  });
  ASSERT_TRUE(service.connect(5s).ok());
  const auto service_fds = broker_fds(broker.port());
  ASSERT_EQ(service_fds.size(), 1u);

  client watcher(options_for(broker, "watcher"));
  inbox got;
  got.attach(watcher);
  ASSERT_TRUE(watcher.subscribe("svc/state", 1).ok());
  ASSERT_TRUE(watcher.connect(5s).ok());
  ASSERT_TRUE(got.wait_for_count(1, 5s));
  EXPECT_EQ(got.messages()[0].payload, "online");
  EXPECT_TRUE(got.messages()[0].retained);

  // Break the service's connection under Paho's feet, as a network failure would.
  ::shutdown(service_fds[0], SHUT_RDWR);
  ASSERT_TRUE(got.wait_for_count(3, 15s)) << "received " << got.size();
  auto msgs = got.messages();
  EXPECT_EQ(msgs[1].payload, "offline");
  EXPECT_EQ(msgs[2].payload, "online");
  EXPECT_EQ(ups.load(), 2);
  EXPECT_EQ(census(broker.port()).with_nodelay, 2);
}

}  // namespace
}  // namespace otter::mqtt
