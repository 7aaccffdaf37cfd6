#include "sim/fleet.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <queue>
#include <random>
#include <thread>
#include <vector>

#include "mqtt/client.hpp"
#include "protocol/topics.hpp"
#include "sim/http_fetch.hpp"
#include "sim/options.hpp"

namespace otter::sim {
namespace {

// A message from the broker, or the end of an HTTP download (topic empty).
struct inbound {
  std::uint32_t index;
  std::string topic;
  std::string payload;
  sim_clock::time_point arrived;
  std::optional<fetch_result> fetched{};
};

struct timer_entry {
  sim_clock::time_point at;
  std::uint32_t index;
  bool operator>(const timer_entry& o) const noexcept { return at > o.at; }
};

sim_time now() {
  return {sim_clock::now(), std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count()};
}

}  // namespace

struct fleet::worker {
  // Filled by the MQTT handlers (Paho's thread), drained by this worker's thread.
  std::mutex mu;
  std::condition_variable cv;
  std::vector<inbound> inbox;
  bool stopping = false;

  // The worker thread's own.
  std::vector<std::uint32_t> owned;
  std::priority_queue<timer_entry, std::vector<timer_entry>, std::greater<>> timers;

  // Written by the worker thread, read by stats().
  mutable std::mutex stats_mu;
  fleet_stats stats;

  std::thread thread;

  void post(std::uint32_t index, const mqtt::message& m) {
    std::lock_guard lock(mu);
    if (stopping) return;  // nobody will read it
    inbox.push_back({index, m.topic, m.payload, sim_clock::now()});
    if (inbox.size() == 1) cv.notify_one();
  }

  void post(std::uint32_t index, fetch_result r) {
    std::lock_guard lock(mu);
    if (stopping) return;
    inbox.push_back({index, {}, {}, sim_clock::now(), std::move(r)});
    if (inbox.size() == 1) cv.notify_one();
  }
};

struct fleet::impl {
  struct slot {
    std::unique_ptr<device> dev;
    std::unique_ptr<mqtt::client> client;
    std::optional<sim_clock::time_point> scheduled;  // the timer entry that counts
    phase counted_phase = phase::idle;               // what the worker's stats count this device as
    std::string counted_version;
  };

  fleet_config cfg;
  protocol::topics topics;
  // Workers outlive the clients (declared first, destroyed last): handlers post to them.
  std::vector<std::unique_ptr<worker>> workers;
  std::vector<slot> slots;
  // --via http: performs the devices' downloads; stopped before the workers go.
  std::unique_ptr<http_fetcher> fetcher;
  std::unique_ptr<std::atomic<bool>[]> up;
  std::atomic<std::size_t> connected{0};
  std::optional<std::size_t> connected_at_stop;  // before stop() disconnected everyone
  bool started = false;
  bool stopped = false;

  explicit impl(fleet_config c) : cfg(std::move(c)), topics(cfg.root) {
    const auto n = static_cast<std::uint32_t>(cfg.devices);
    const auto k = static_cast<std::uint32_t>(std::max(1, std::min(cfg.workers, cfg.devices)));
    for (std::uint32_t w = 0; w < k; ++w) workers.push_back(std::make_unique<worker>());
    up = std::make_unique<std::atomic<bool>[]>(n);
    slots.resize(n);
    const std::uint64_t base = std::random_device{}();
    const auto version_text = cfg.version.text();
    for (std::uint32_t i = 0; i < n; ++i) {
      auto& s = slots[i];
      auto& w = *workers[i % k];
      const auto id = device_id(cfg.prefix, static_cast<int>(i), cfg.devices);
      s.dev = std::make_unique<device>(id, cfg.version, cfg.settings, topics,
                                       base * 0x9E3779B97F4A7C15ull + i);
      s.counted_version = version_text;
      w.owned.push_back(i);
    }
    if (cfg.settings.via == transport::http) {
      const auto timeout =
          std::chrono::duration_cast<std::chrono::seconds>(cfg.settings.http_timeout);
      fetcher = std::make_unique<http_fetcher>(
          std::min<std::size_t>(32, n), timeout,
          [this, k](std::uint32_t i, fetch_result r) { workers[i % k]->post(i, std::move(r)); });
    }
    for (auto& w : workers) {
      w->stats.workers = 1;
      w->stats.devices = w->owned.size();
      w->stats.phases[static_cast<std::size_t>(phase::idle)] = w->owned.size();
      w->stats.versions[version_text] = w->owned.size();
    }
  }

  void make_clients() {
    const auto k = workers.size();
    for (std::uint32_t i = 0; i < slots.size(); ++i) {
      auto& s = slots[i];
      mqtt::client_options o;
      o.server_uri = cfg.mqtt_url;
      o.client_id = s.dev->id();  // the broker's ACL knows a device by its client id
      o.connect_timeout = std::chrono::seconds(10);
      s.client = std::make_unique<mqtt::client>(o);
      worker* w = workers[i % k].get();
      // Handlers run on Paho's one callback thread: queue and return.
      s.client->on_message([w, i](const mqtt::message& m) { w->post(i, m); });
      s.client->on_state([this, i](bool is_up) {
        if (up[i].exchange(is_up) != is_up) {
          if (is_up)
            connected.fetch_add(1);
          else
            connected.fetch_sub(1);
        }
      });
      // Not connected yet: remembered, and made on every (re)connect.
      (void)s.client->subscribe(topics.device_down_filter(s.dev->id()), 1);
    }
  }

  // After any call into device i: publish what it asks, count what happened, re-arm its timer.
  void settle(worker& w, std::uint32_t i, effects& fx) {
    auto& s = slots[i];
    for (const auto& p : fx.publish)
      if (!s.client->publish(p.topic, p.payload, 1))
        fx.notes.push_back({note::kind::error, "publish_failed"});
    for (auto& f : fx.fetches)
      if (fetcher) fetcher->submit(i, std::move(f));
    {
      std::lock_guard lock(w.stats_mu);
      for (const auto& n : fx.notes) w.stats.apply(n);
      const auto ph = s.dev->current_phase();
      if (ph != s.counted_phase) {
        --w.stats.phases[static_cast<std::size_t>(s.counted_phase)];
        ++w.stats.phases[static_cast<std::size_t>(ph)];
        s.counted_phase = ph;
      }
      if (s.dev->version() != s.counted_version) {
        if (--w.stats.versions[s.counted_version] == 0) w.stats.versions.erase(s.counted_version);
        ++w.stats.versions[s.dev->version()];
        s.counted_version = s.dev->version();
      }
    }
    fx.clear();
    if (s.dev->deadline() != s.scheduled) {
      s.scheduled = s.dev->deadline();
      if (s.scheduled) w.timers.push({*s.scheduled, i});
    }
  }

  void run(worker& w) {
    effects fx;
    const auto t0 = now();
    for (const auto i : w.owned) {
      slots[i].dev->start(t0);
      settle(w, i, fx);
    }
    std::vector<inbound> batch;
    for (;;) {
      {
        std::unique_lock lock(w.mu);
        const auto until =
            w.timers.empty() ? sim_clock::now() + std::chrono::seconds(1) : w.timers.top().at;
        w.cv.wait_until(lock, until, [&] { return w.stopping || !w.inbox.empty(); });
        if (w.stopping) return;
        batch.swap(w.inbox);
      }
      auto t = now();
      {
        // A wake-up for timers alone means nothing was waiting: no lag.
        const auto lag = batch.empty() ? 0
                                       : std::chrono::duration_cast<std::chrono::milliseconds>(
                                             t.mono - batch.front().arrived)
                                             .count();
        std::lock_guard lock(w.stats_mu);
        w.stats.lag_ms = lag;
        w.stats.lag_max_ms = std::max(w.stats.lag_max_ms, lag);
        w.stats.queue_peak = std::max(w.stats.queue_peak, batch.size());
      }
      for (const auto& m : batch) {
        if (m.fetched)
          slots[m.index].dev->on_fetched(t, *m.fetched, fx);
        else
          slots[m.index].dev->on_message(t, m.topic, m.payload, fx);
        settle(w, m.index, fx);
      }
      batch.clear();
      t = now();
      while (!w.timers.empty() && w.timers.top().at <= t.mono) {
        const auto e = w.timers.top();
        w.timers.pop();
        auto& s = slots[e.index];
        if (s.scheduled != e.at) continue;  // superseded by a later deadline
        s.scheduled.reset();
        s.dev->on_timer(t, fx);
        settle(w, e.index, fx);
      }
    }
  }

  void disconnect_all() {
    // In parallel: a disconnect waits for what is in flight (up to a second), and with
    // thousands of devices one after the other that adds up.
    const std::size_t threads = std::min<std::size_t>(64, slots.size());
    std::atomic<std::size_t> next{0};
    std::vector<std::thread> pool;
    for (std::size_t t = 0; t < threads; ++t) {
      pool.emplace_back([&] {
        for (std::size_t i = next++; i < slots.size(); i = next++) {
          if (slots[i].client) {
            slots[i].client->disconnect(std::chrono::seconds(1));
            slots[i].client.reset();
          }
        }
      });
    }
    for (auto& t : pool) t.join();
  }
};

fleet::fleet(fleet_config config) : impl_(std::make_unique<impl>(std::move(config))) {}

fleet::~fleet() {
  stop();
}

result<void> fleet::connect(std::chrono::milliseconds timeout) {
  using namespace std::chrono_literals;
  auto& m = *impl_;
  m.make_clients();
  // All at once: connecting one by one would cost a round trip (or more) per device.
  for (auto& s : m.slots) s.client->start_connect();
  const auto begin = sim_clock::now();
  const auto deadline = begin + timeout;
  // A broker that is not there refuses at once: give up on it early rather than at the end of a
  // timeout sized for thousands of devices.
  const auto none_by = begin + std::min<std::chrono::milliseconds>(timeout, 5s);
  std::size_t up = 0;
  for (;;) {
    up = m.connected.load();
    const auto t = sim_clock::now();
    if (up == m.slots.size() || t >= deadline || (up == 0 && t >= none_by)) break;
    std::this_thread::sleep_for(20ms);
  }
  if (up == m.slots.size()) return {};
  std::string last_error;
  for (auto& s : m.slots) {
    if (auto r = s.client->wait_connected(1ms); !r) {
      last_error = r.error().message;
      break;
    }
  }
  m.disconnect_all();
  const auto waited = std::chrono::duration_cast<std::chrono::seconds>(sim_clock::now() - begin);
  return make_error(
      errc::unavailable,
      std::to_string(m.slots.size() - up) + " of " + std::to_string(m.slots.size()) +
          " devices did not connect to " + m.cfg.mqtt_url + " within " +
          std::to_string(waited.count()) + " s (" + last_error +
          "). Is the broker running there? Point --mqtt (or OTTER_MQTT_URL) at it; with many "
          "devices, also check the broker's and this shell's open-file limits (ulimit -n).");
}

void fleet::start() {
  auto& m = *impl_;
  if (m.started) return;
  m.started = true;
  for (auto& w : m.workers) {
    worker* p = w.get();
    w->thread = std::thread([&m, p] { m.run(*p); });
  }
}

void fleet::stop() {
  auto& m = *impl_;
  if (m.stopped) return;
  m.stopped = true;
  if (m.fetcher) m.fetcher->stop();  // its threads post to the workers
  for (auto& w : m.workers) {
    {
      std::lock_guard lock(w->mu);
      w->stopping = true;
    }
    w->cv.notify_all();
  }
  for (auto& w : m.workers)
    if (w->thread.joinable()) w->thread.join();
  m.connected_at_stop = m.connected.load();
  m.disconnect_all();
}

fleet_stats fleet::stats(bool with_durations) const {
  fleet_stats total;
  for (const auto& w : impl_->workers) {
    std::lock_guard lock(w->stats_mu);
    total.merge(w->stats, with_durations);
  }
  total.connected = impl_->connected_at_stop.value_or(impl_->connected.load());
  return total;
}

}  // namespace otter::sim
