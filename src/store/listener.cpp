#include "store/listener.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <pqxx/pqxx>

#include "store/pg_util.hpp"

namespace otter::store {
namespace {

constexpr const char* kChannel = "otter_catalog";       // sql/001_init.sql's otter_notify_catalog()
constexpr const char* kGrantsChannel = "otter_grants";  // the writer's NOTIFY
constexpr const char* kDevicesChannel = "otter_devices";  // the writer's NOTIFY

constexpr std::chrono::milliseconds kBackoffMin{100};
constexpr std::chrono::milliseconds kBackoffMax{5000};
// How long one wait for a notification lasts: the bound on stop()'s latency.
constexpr long kWaitSeconds = 0;
constexpr long kWaitMicros = 250'000;

void call(const std::function<void()>& f) {
  if (!f) return;
  try {
    f();
  } catch (const std::exception& e) {
    spdlog::warn("store: listener: on_change failed: {}", e.what());
  }
}

// libpqxx 6 issues LISTEN when the receiver registers (and again if the connection is
// reactivated, which this code never relies on: it replaces broken connections itself).
class receiver final : public pqxx::notification_receiver {
 public:
  receiver(pqxx::connection_base& c, const std::function<void()>& on_change)
      : pqxx::notification_receiver(c, kChannel), on_change_(on_change) {}
  void operator()(const std::string& /*payload*/, int /*backend_pid*/) override {
    call(on_change_);
  }

 private:
  const std::function<void()>& on_change_;
};

class payload_receiver final : public pqxx::notification_receiver {
 public:
  payload_receiver(pqxx::connection_base& c, const char* channel,
                   const std::function<void(const std::string&)>& f)
      : pqxx::notification_receiver(c, channel), f_(f) {}
  void operator()(const std::string& payload, int /*backend_pid*/) override {
    try {
      f_(payload);
    } catch (const std::exception& e) {
      spdlog::warn("store: listener: handling a {} notification failed: {}", channel(), e.what());
    }
  }

 private:
  const std::function<void(const std::string&)>& f_;
};

}  // namespace

listener::listener(std::string db_url, listener_handlers handlers)
    : db_url_(std::move(db_url)), h_(std::move(handlers)) {}

listener::~listener() {
  stop();
}

void listener::start() {
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { run(); });
}

void listener::stop() {
  stop_ = true;
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void listener::run() {
  auto backoff = kBackoffMin;
  while (!stop_) {
    try {
      detail::session db{db_url_};
      receiver r{db.conn, h_.on_change};
      std::optional<payload_receiver> g, d;
      if (h_.on_grants) g.emplace(db.conn, kGrantsChannel, h_.on_grants);
      if (h_.on_devices) d.emplace(db.conn, kDevicesChannel, h_.on_devices);
      // Destroyed before r: without a connection, r's destructor sends no UNLISTEN, which on a
      // broken connection would make libpqxx reconnect just to send it.
      struct closer {
        pqxx::connection& c;
        ~closer() { c.disconnect(); }
      } close_first{db.conn};
      // add_receiver swallows a broken connection while sending LISTEN: make sure it is up.
      if (!db.conn.is_open()) throw pqxx::broken_connection{"connection lost while subscribing"};
      spdlog::debug("store: listening on {}", kChannel);
      backoff = kBackoffMin;
      call(h_.on_change);  // whatever changed while not listening
      if (h_.on_connect) call(h_.on_connect);
      while (!stop_) {
        db.conn.await_notification(kWaitSeconds, kWaitMicros);
        // A dropped connection is not always an exception here (get_notifs() returns 0 once
        // the connection is closed), and await_notification() would silently reconnect.
        if (!db.conn.is_open()) throw pqxx::broken_connection{"connection lost"};
      }
    } catch (const std::exception& e) {
      if (stop_) break;
      spdlog::warn("store: listener: {}; retrying in {} ms", detail::first_line(e.what()),
                   backoff.count());
      const auto until = std::chrono::steady_clock::now() + backoff;
      while (!stop_ && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
            std::chrono::milliseconds{20}, until - std::chrono::steady_clock::now()));
      backoff = std::min(backoff * 2, kBackoffMax);
    }
  }
}

}  // namespace otter::store
