#include "mqtt/client.hpp"

#include <mqtt/async_client.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "mqtt/nodelay.hpp"

namespace otter::mqtt {
namespace {

// Depth of our Paho callbacks on this thread: blocking there would stall the thread that
// delivers the very acknowledgement being waited for.
thread_local int tl_callback_depth = 0;

constexpr int kBadSubscribe = 0x80;  // MQTT 3.1.1 SUBACK "failure"

errc errc_of(int rc) {
  switch (rc) {
    case MQTTASYNC_BAD_UTF8_STRING:
    case MQTTASYNC_NULL_PARAMETER:
    case MQTTASYNC_TOPICNAME_TRUNCATED:
    case MQTTASYNC_BAD_STRUCTURE:
    case MQTTASYNC_BAD_QOS:
    case MQTTASYNC_BAD_MQTT_OPTION:
    case MQTTASYNC_WRONG_MQTT_VERSION:
      return errc::bad_request;
    case MQTTASYNC_FAILURE:
    case MQTTASYNC_DISCONNECTED:
    case MQTTASYNC_MAX_MESSAGES_INFLIGHT:
    case MQTTASYNC_NO_MORE_MSGIDS:
    case MQTTASYNC_OPERATION_INCOMPLETE:
    case MQTTASYNC_MAX_BUFFERED_MESSAGES:
      return errc::unavailable;
    default:
      return errc::internal;
  }
}

std::string describe(int rc, int reason) {
  if (reason >= 0x80) return "reason " + ::mqtt::exception::reason_code_str(reason);
  if (rc > 0) return "refused with code " + std::to_string(rc);
  return ::mqtt::exception::error_str(rc);
}

// CONNACK refusals for the credentials: MQTT 3.1.1 return codes 4 (bad user name or password)
// and 5 (not authorized); MQTT 5 reason codes 0x86, 0x87 and 0x8C (bad authentication method),
// which Paho reports as the return code or the reason code.
bool refused_credentials(int rc, int reason) {
  for (int code : {rc, reason})
    if (code == 4 || code == 5 || code == 0x86 || code == 0x87 || code == 0x8C) return true;
  return false;
}

// Paho hands a void* back with every token: we store the connection generation in it.
void* generation_context(std::uint64_t generation) {
  return reinterpret_cast<void*>(static_cast<std::uintptr_t>(generation));
}

std::uint64_t generation_of(const ::mqtt::token& tok) {
  return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(tok.get_user_context()));
}

message to_message(const ::mqtt::const_message_ptr& in) {
  message out;
  out.topic = in->get_topic();
  out.payload = in->get_payload_str();
  out.qos = in->get_qos();
  out.retained = in->is_retained();
  const auto& props = in->get_properties();
  if (!props.empty()) {
    if (props.contains(::mqtt::property::RESPONSE_TOPIC))
      out.response_topic = ::mqtt::get<std::string>(props, ::mqtt::property::RESPONSE_TOPIC);
    if (props.contains(::mqtt::property::CORRELATION_DATA))
      out.correlation_data = ::mqtt::get<std::string>(props, ::mqtt::property::CORRELATION_DATA);
  }
  return out;
}

::mqtt::create_options make_create_options(const client_options& o) {
  // The version here decides how Paho encodes packets; the connect options only ask for it.
  ::mqtt::create_options c(o.mqtt_version);
  // Paho refuses publishes once ~100 are queued inside it, even while connected.
  c.set_max_buffered_messages(std::max(1, o.max_buffered));
  // Publishing while disconnected must fail rather than pile up silently.
  c.set_send_while_disconnected(false);
  c.set_delete_oldest_messages(false);
  c.set_restore_messages(false);
  c.set_persist_qos0(false);
  return c;
}

::mqtt::connect_options make_connect_options(const client_options& o) {
  ::mqtt::connect_options c;
  c.set_mqtt_version(o.mqtt_version);
  if (o.mqtt_version >= 5) {
    c.set_clean_session(false);  // Paho rejects a v5 connect with the 3.1.1 flag set
    c.set_clean_start(o.clean_session);
    if (!o.clean_session) {
      ::mqtt::properties props;
      // 0xFFFFFFFF: the session never expires, the MQTT 3.1.1 meaning of clean_session=false.
      props.add({::mqtt::property::SESSION_EXPIRY_INTERVAL,
                 static_cast<std::int32_t>(std::numeric_limits<std::uint32_t>::max())});
      c.set_properties(std::move(props));
    }
  } else {
    c.set_clean_start(false);
    c.set_clean_session(o.clean_session);
  }
  c.set_keep_alive_interval(o.keep_alive);
  c.set_connect_timeout(o.connect_timeout);
  c.set_max_inflight(std::max(1, o.max_inflight));
  if (!o.username.empty()) c.set_user_name(o.username);
  if (!o.password.empty()) c.set_password(o.password);
  if (o.will) {
    c.set_will(::mqtt::will_options(o.will->topic, o.will->payload, o.will->qos, o.will->retained));
  }
  // Also retries a failed first attempt, with the same backoff.
  c.set_automatic_reconnect(std::max<std::chrono::seconds>(o.min_retry, std::chrono::seconds(1)),
                            std::max(o.max_retry, o.min_retry));
  return c;
}

}  // namespace

struct client::impl {
  struct subscription {
    std::string filter;
    int qos;
  };

  // Paho calls these for every connect attempt, automatic ones included.
  struct connect_listener final : ::mqtt::iaction_listener {
    impl* self;
    explicit connect_listener(impl* s) : self(s) {}
    void on_success(const ::mqtt::token& tok) override { self->connect_succeeded(tok); }
    void on_failure(const ::mqtt::token& tok) override { self->connect_failed(tok); }
  };

  // For the subscriptions re-made after a connect; the context is the connection generation.
  struct resubscribe_listener final : ::mqtt::iaction_listener {
    impl* self;
    explicit resubscribe_listener(impl* s) : self(s) {}
    void on_success(const ::mqtt::token& tok) override { self->resubscribed(tok, true); }
    void on_failure(const ::mqtt::token& tok) override { self->resubscribed(tok, false); }
  };

  // For QoS 1/2 publishes handed to Paho; the context is the connection generation.
  struct delivery_listener final : ::mqtt::iaction_listener {
    impl* self;
    explicit delivery_listener(impl* s) : self(s) {}
    void on_success(const ::mqtt::token& tok) override { self->delivered(generation_of(tok)); }
    void on_failure(const ::mqtt::token& tok) override { self->delivered(generation_of(tok)); }
  };

  // Every entry from Paho goes through one of these: it marks the thread (see
  // tl_callback_depth) and counts the callback, so the destructor can wait until none runs.
  // After `closing` is set, callbacks do nothing.
  class callback_scope {
   public:
    explicit callback_scope(impl& s) : s_(s) {
      ++tl_callback_depth;
      std::lock_guard lock(s_.mu);
      active_ = !s_.closing;
      if (active_) ++s_.busy;
    }
    ~callback_scope() {
      --tl_callback_depth;
      if (!active_) return;
      std::lock_guard lock(s_.mu);
      if (--s_.busy == 0) s_.cv.notify_all();
    }
    callback_scope(const callback_scope&) = delete;
    callback_scope& operator=(const callback_scope&) = delete;
    explicit operator bool() const { return active_; }

   private:
    impl& s_;
    bool active_ = false;
  };

  client_options opts;
  connect_listener on_connect_result{this};
  resubscribe_listener on_resubscribed{this};
  delivery_listener on_delivered{this};

  mutable std::mutex mu;
  std::condition_variable cv;  // any change of the state below
  std::vector<subscription> subs;
  std::shared_ptr<const message_handler> msg_handler;
  std::shared_ptr<const state_handler> st_handler;
  bool started = false;          // start_connect() called and no disconnect() since
  bool session_up = false;       // Paho has a connection
  bool ready = false;            // ... and every remembered subscription is acknowledged
  bool ever_connected = false;   // to tell connects from reconnects in the log
  std::uint64_t generation = 0;  // bumped on every connect and loss; stale acks are ignored
  std::size_t pending_subs = 0;
  std::size_t failures = 0;  // connect attempts failed since the last success
  std::string last_error;
  bool auth_refused = false;  // the last attempt was refused for its credentials
  bool handlers_off = false;  // destruction began: user handlers are no longer called
  bool closing = false;       // destruction is past disconnect: Paho callbacks are ignored
  int handlers_running = 0;
  int busy = 0;  // Paho callbacks inside this object

  // Outgoing flow control. Paho C 1.3.12 does not wake its send thread when an acknowledgement
  // frees a slot in the in-flight window: a publish queued behind a full window waits for the
  // send thread's 1 s timed wait (fixed upstream by paho.mqtt.c PR #1457, after 1.3.12).
  // Mosquitto grants MQTT 5 clients a window of 20, so bursts crawled at 20 messages a second.
  // Messages therefore wait here and go to Paho only while the window has room; each hand-off
  // is a new Paho command, and a new command does wake the send thread.
  std::deque<::mqtt::message_ptr> backlog;
  std::uint64_t backlog_bytes = 0;  // payload bytes in `backlog`
  std::size_t in_window = 0;        // QoS 1/2 messages handed to Paho and not yet acknowledged
  std::size_t window = 1;           // min(max_inflight, the broker's receive maximum)
  bool draining = false;            // one thread at a time hands messages over, in order

  // Last member: destroyed first, so Paho is gone before anything its callbacks touch.
  ::mqtt::async_client cli;

  explicit impl(client_options o)
      : opts(std::move(o)),
        window(static_cast<std::size_t>(std::max(1, opts.max_inflight))),
        cli(opts.server_uri, opts.client_id, make_create_options(opts), nullptr) {
    cli.set_connected_handler([this](const std::string&) { connected(); });
    cli.set_connection_lost_handler([this](const std::string& cause) { lost(cause); });
    cli.set_disconnected_handler([this](const ::mqtt::properties&, ::mqtt::ReasonCode reason) {
      lost("broker sent DISCONNECT, " + ::mqtt::exception::reason_code_str(reason));
    });
    cli.set_message_callback([this](::mqtt::const_message_ptr m) { arrived(m); });
  }

  // Handlers are copied under the lock and counted while they run, so the destructor can wait
  // for them; exceptions must not unwind into Paho's C code.
  template <class H, class Arg>
  void call(const std::shared_ptr<const H> impl::*which, const char* what, const Arg& arg) {
    std::shared_ptr<const H> h;
    {
      std::lock_guard lock(mu);
      if (handlers_off || !(this->*which)) return;
      h = this->*which;
      ++handlers_running;
    }
    try {
      (*h)(arg);
    } catch (const std::exception& e) {
      spdlog::error("mqtt {}: {} handler threw: {}", opts.client_id, what, e.what());
    } catch (...) {
      spdlog::error("mqtt {}: {} handler threw a non-standard exception", opts.client_id, what);
    }
    std::lock_guard lock(mu);
    if (--handlers_running == 0) cv.notify_all();
  }

  void notify_state(bool up) { call(&impl::st_handler, "state", up); }

  void connected() {
    callback_scope scope(*this);
    if (!scope) return;
    // Before anything else is sent on the new connection.
    if (opts.tcp_nodelay) nodelay::tune();
    std::vector<subscription> snapshot;
    std::uint64_t gen = 0;
    bool reconnect = false;
    bool stray = false;
    {
      std::lock_guard lock(mu);
      stray = !started;
      if (!stray) {
        session_up = true;
        ready = false;
        gen = ++generation;
        snapshot = subs;
        pending_subs = snapshot.size();
        reconnect = ever_connected;
        ever_connected = true;
        failures = 0;
        last_error.clear();
        auth_refused = false;
        in_window = 0;  // what was in flight belongs to the old connection and its generation
      }
    }
    if (stray) {  // an attempt that was under way when disconnect() was called
      try {
        cli.disconnect(0);
      } catch (const ::mqtt::exception&) {
      }
      return;
    }
    spdlog::info("mqtt {}: {} to {} (MQTT {}), restoring {} subscription(s)", opts.client_id,
                 reconnect ? "reconnected" : "connected", opts.server_uri,
                 opts.mqtt_version >= 5 ? "5" : "3.1.1", snapshot.size());
    // A clean session forgets subscriptions and Paho does not re-make them: do it here.
    std::size_t failed = 0;
    for (const auto& s : snapshot) {
      try {
        cli.subscribe(s.filter, s.qos, generation_context(gen), on_resubscribed);
      } catch (const ::mqtt::exception& e) {
        spdlog::warn("mqtt {}: cannot resubscribe to {}: {}", opts.client_id, s.filter, e.what());
        ++failed;
      }
    }
    // An unsubscribe() since the snapshot may have sent its UNSUBSCRIBE before the SUBSCRIBE
    // above (the broker would then stay subscribed): send it again, after. (No lock across the
    // two: Paho runs this callback holding its own mutex, which unsubscribe() needs.)
    std::vector<std::string> dropped;
    {
      std::lock_guard lock(mu);
      for (const auto& s : snapshot)
        if (std::none_of(subs.begin(), subs.end(),
                         [&](const auto& now) { return now.filter == s.filter; }))
          dropped.push_back(s.filter);
    }
    for (const auto& f : dropped) {
      try {
        cli.unsubscribe(f);
      } catch (const ::mqtt::exception& e) {
        spdlog::warn("mqtt {}: cannot unsubscribe from {}: {}", opts.client_id, f, e.what());
      }
    }
    for (std::size_t i = 0; i < failed; ++i) settle(gen, true);
    if (snapshot.empty()) settle(gen, false);
    drain();  // what was queued while the connection was down
  }

  void resubscribed(const ::mqtt::token& tok, bool ok) {
    callback_scope scope(*this);
    if (!scope) return;
    if (!ok)
      spdlog::warn("mqtt {}: broker refused a subscription after connecting: {}", opts.client_id,
                   describe(tok.get_return_code(), tok.get_reason_code()));
    settle(generation_of(tok), true);
  }

  // One subscription of connection `gen` answered (or none were needed).
  void settle(std::uint64_t gen, bool one_answered) {
    {
      std::lock_guard lock(mu);
      if (gen != generation || !session_up || ready) return;
      if (one_answered && pending_subs > 0) --pending_subs;
      if (pending_subs > 0) return;
      ready = true;
    }
    cv.notify_all();
    notify_state(true);
  }

  void lost(const std::string& cause) {
    callback_scope scope(*this);
    if (!scope) return;
    nodelay::forget_closed();
    bool was_ready = false;
    {
      std::lock_guard lock(mu);
      if (!session_up) return;  // connection_lost right after the MQTT 5 DISCONNECT callback
      was_ready = ready;
      session_up = false;
      ready = false;
      ++generation;
      last_error = cause.empty() ? "connection lost" : cause;
    }
    cv.notify_all();
    spdlog::warn("mqtt {}: lost connection to {} ({}); reconnecting", opts.client_id,
                 opts.server_uri, cause.empty() ? "no reason given" : cause);
    if (was_ready) notify_state(false);
  }

  void connect_succeeded(const ::mqtt::token& tok) {
    callback_scope scope(*this);
    if (!scope) return;
    std::size_t w = static_cast<std::size_t>(std::max(1, opts.max_inflight));
    try {
      const auto response = tok.get_connect_response();  // by value: keep it alive
      const auto& props = response.get_properties();
      if (props.contains(::mqtt::property::RECEIVE_MAXIMUM)) {
        auto granted = ::mqtt::get<std::uint16_t>(props, ::mqtt::property::RECEIVE_MAXIMUM);
        w = std::min<std::size_t>(w, std::max<std::uint16_t>(granted, 1));
      }
    } catch (const std::exception&) {
      // No CONNACK properties (MQTT 3.1.1): only our own limit applies.
    }
    std::lock_guard lock(mu);
    window = w;
  }

  void connect_failed(const ::mqtt::token& tok) {
    callback_scope scope(*this);
    if (!scope) return;
    nodelay::forget_closed();  // the socket may have been up (and tuned) before the refusal
    const std::string why = describe(tok.get_return_code(), tok.get_reason_code());
    std::size_t n = 0;
    {
      std::lock_guard lock(mu);
      if (!started) return;
      last_error = "connect failed: " + why;
      auth_refused = refused_credentials(tok.get_return_code(), tok.get_reason_code());
      n = ++failures;
    }
    cv.notify_all();
    if (n == 1)
      spdlog::warn("mqtt {}: cannot connect to {}: {}; retrying every {}-{} s", opts.client_id,
                   opts.server_uri, why, opts.min_retry.count(), opts.max_retry.count());
    else
      spdlog::debug("mqtt {}: connect attempt {} to {} failed: {}", opts.client_id, n,
                    opts.server_uri, why);
  }

  void arrived(const ::mqtt::const_message_ptr& m) {
    callback_scope scope(*this);
    if (!scope || !m) return;
    call(&impl::msg_handler, "message", to_message(m));
  }

  // A QoS 1/2 publish of connection `gen` was acknowledged (or failed): its slot is free.
  void delivered(std::uint64_t gen) {
    callback_scope scope(*this);
    if (!scope) return;
    {
      std::lock_guard lock(mu);
      if (gen != generation) return;
      if (in_window > 0) --in_window;
    }
    cv.notify_all();  // disconnect() may wait for the backlog to empty
    drain();
  }

  // Hands queued messages to Paho while the window has room, oldest first. Never holds `mu`
  // while calling into Paho; a caller who finds `draining` set leaves the work to that thread,
  // which looks again before it stops.
  void drain() {
    std::unique_lock lock(mu);
    if (draining) return;
    draining = true;
    std::vector<::mqtt::message_ptr> batch;
    while (session_up) {
      while (!backlog.empty() && (backlog.front()->get_qos() == 0 || in_window < window)) {
        if (backlog.front()->get_qos() > 0) ++in_window;
        backlog_bytes -= std::min(backlog_bytes, backlog.front()->get_payload_ref().size());
        batch.push_back(std::move(backlog.front()));
        backlog.pop_front();
      }
      if (batch.empty()) break;
      const std::uint64_t gen = generation;
      lock.unlock();
      std::size_t handed = 0;
      std::size_t failed = 0;
      for (; handed < batch.size(); ++handed) {
        const auto& msg = batch[handed];
        try {
          if (msg->get_qos() > 0)
            cli.publish(msg, generation_context(gen), on_delivered);
          else
            cli.publish(msg);
        } catch (const ::mqtt::exception& e) {
          if (e.get_return_code() == MQTTASYNC_DISCONNECTED) break;
          spdlog::warn("mqtt {}: dropped a message to {}: {}", opts.client_id, msg->get_topic(),
                       e.what());
          if (msg->get_qos() > 0) ++failed;
        }
      }
      lock.lock();
      if (gen == generation) in_window -= std::min(in_window, failed);
      if (handed < batch.size()) {
        // The connection went away: the rest go out, in order, after the reconnect.
        for (std::size_t i = batch.size(); i-- > handed;) {
          if (batch[i]->get_qos() > 0 && gen == generation && in_window > 0) --in_window;
          backlog_bytes += batch[i]->get_payload_ref().size();
          backlog.push_front(std::move(batch[i]));
        }
        batch.clear();
        break;
      }
      batch.clear();
    }
    draining = false;
    cv.notify_all();
  }
};

client::client(client_options options) {
  const auto uri = options.server_uri;
  try {
    impl_ = std::make_unique<impl>(std::move(options));
  } catch (const ::mqtt::exception& e) {
    throw std::invalid_argument("mqtt client for " + uri + ": " + e.what());
  }
  if (impl_->opts.tcp_nodelay) nodelay::add_broker(impl_->opts.server_uri);
}

client::~client() {
  auto& s = *impl_;
  const bool on_paho_thread = tl_callback_depth > 0;
  {
    // No user code may run once the owner started tearing down what the handlers use.
    std::unique_lock lock(s.mu);
    s.handlers_off = true;
    if (!on_paho_thread) s.cv.wait(lock, [&] { return s.handlers_running == 0; });
  }
  disconnect(std::chrono::seconds(2));
  {
    std::unique_lock lock(s.mu);
    s.closing = true;
    if (!on_paho_thread) s.cv.wait(lock, [&] { return s.busy == 0; });
  }
  if (s.opts.tcp_nodelay) nodelay::remove_broker(s.opts.server_uri);
}

void client::on_message(message_handler handler) {
  auto h = handler ? std::make_shared<const message_handler>(std::move(handler)) : nullptr;
  std::lock_guard lock(impl_->mu);
  impl_->msg_handler = std::move(h);
}

void client::on_state(state_handler handler) {
  auto h = handler ? std::make_shared<const state_handler>(std::move(handler)) : nullptr;
  std::lock_guard lock(impl_->mu);
  impl_->st_handler = std::move(h);
}

result<void> client::subscribe(std::string filter, int qos, std::chrono::milliseconds timeout) {
  auto& s = *impl_;
  if (qos < 0 || qos > 2) return make_error(errc::bad_request, "qos must be 0, 1 or 2");
  if (filter.empty()) return make_error(errc::bad_request, "empty topic filter");
  bool up = false;
  {
    std::lock_guard lock(s.mu);
    auto it = std::find_if(s.subs.begin(), s.subs.end(),
                           [&](const auto& sub) { return sub.filter == filter; });
    if (it == s.subs.end())
      s.subs.push_back({filter, qos});
    else
      it->qos = qos;
    up = s.session_up;
  }
  // Not connected: the next connect makes it, like every remembered subscription.
  if (!up) return {};
  ::mqtt::token_ptr tok;
  try {
    tok = s.cli.subscribe(filter, qos);
  } catch (const ::mqtt::exception& e) {
    if (e.get_return_code() == MQTTASYNC_DISCONNECTED) return {};  // lost meanwhile: as above
    return make_error(errc_of(e.get_return_code()), "subscribe to " + filter + ": " + e.what());
  }
  if (timeout.count() <= 0 || tl_callback_depth > 0) return {};
  try {
    if (!tok->wait_for(timeout))
      return make_error(errc::unavailable, "no SUBACK for " + filter + " within " +
                                               std::to_string(timeout.count()) + " ms");
  } catch (const ::mqtt::exception& e) {
    if (e.get_return_code() == kBadSubscribe || e.get_reason_code() >= 0x80) {
      std::lock_guard lock(s.mu);
      std::erase_if(s.subs, [&](const auto& sub) { return sub.filter == filter; });
      return make_error(errc::forbidden, "broker refused subscription to " + filter + ": " +
                                             describe(e.get_return_code(), e.get_reason_code()));
    }
    return make_error(errc::unavailable, "subscribe to " + filter + ": " + e.what());
  }
  return {};
}

result<void> client::unsubscribe(const std::string& filter, std::chrono::milliseconds timeout) {
  auto& s = *impl_;
  bool up = false;
  {
    std::lock_guard lock(s.mu);
    std::erase_if(s.subs, [&](const auto& sub) { return sub.filter == filter; });
    up = s.session_up;
  }
  if (!up) return {};
  try {
    auto tok = s.cli.unsubscribe(filter);
    if (timeout.count() > 0 && tl_callback_depth == 0 && !tok->wait_for(timeout))
      return make_error(errc::unavailable, "no UNSUBACK for " + filter + " within " +
                                               std::to_string(timeout.count()) + " ms");
  } catch (const ::mqtt::exception& e) {
    if (e.get_return_code() == MQTTASYNC_DISCONNECTED) return {};  // nothing to undo
    // MQTT 5 "no subscription existed": what was asked for holds.
    if (e.get_reason_code() == MQTTREASONCODE_NO_SUBSCRIPTION_FOUND) return {};
    return make_error(errc::unavailable, "unsubscribe from " + filter + ": " + e.what());
  }
  return {};
}

result<void> client::connect(std::chrono::milliseconds timeout) {
  start_connect();
  return wait_connected(timeout);
}

void client::start_connect() {
  auto& s = *impl_;
  {
    std::lock_guard lock(s.mu);
    if (s.started || s.handlers_off) return;
    s.started = true;
    s.failures = 0;
    s.last_error.clear();
  }
  spdlog::info("mqtt {}: connecting to {} (MQTT {}{})", s.opts.client_id, s.opts.server_uri,
               s.opts.mqtt_version >= 5 ? "5" : "3.1.1",
               s.opts.username.empty() ? "" : ", user " + s.opts.username);
  try {
    s.cli.connect(make_connect_options(s.opts), nullptr, s.on_connect_result);
  } catch (const ::mqtt::exception& e) {
    {
      std::lock_guard lock(s.mu);
      s.started = false;
      s.last_error = std::string("cannot start connecting: ") + e.what();
    }
    s.cv.notify_all();
    spdlog::error("mqtt {}: cannot start connecting to {}: {}", s.opts.client_id, s.opts.server_uri,
                  e.what());
  }
}

result<void> client::wait_connected(std::chrono::milliseconds timeout) {
  auto& s = *impl_;
  std::unique_lock lock(s.mu);
  if (tl_callback_depth == 0)
    s.cv.wait_for(lock, timeout, [&] { return s.ready || !s.started || s.auth_refused; });
  if (s.ready) return {};
  // Retrying does not mend credentials: say so at once (the client still retries).
  if (s.auth_refused)
    return make_error(errc::forbidden, "mqtt " + s.opts.client_id + ": " + s.opts.server_uri +
                                           " refused the user name or password (" + s.last_error +
                                           ")");
  std::string why = !s.started ? "not started" : "timed out";
  if (!s.last_error.empty()) why += ", last error: " + s.last_error;
  return make_error(errc::unavailable, "mqtt " + s.opts.client_id + ": not connected to " +
                                           s.opts.server_uri + " (" + why + ")");
}

bool client::connected() const {
  std::lock_guard lock(impl_->mu);
  return impl_->ready;
}

result<void> client::publish(std::string_view topic, std::string_view payload, int qos,
                             bool retained) {
  message m;
  m.topic = topic;
  m.payload = payload;
  m.qos = qos;
  m.retained = retained;
  return publish(m);
}

result<void> client::publish(const message& m) {
  auto& s = *impl_;
  if (m.qos < 0 || m.qos > 2) return make_error(errc::bad_request, "qos must be 0, 1 or 2");
  if (m.topic.empty()) return make_error(errc::bad_request, "empty topic");
  ::mqtt::message_ptr msg;
  try {
    msg = ::mqtt::message::create(m.topic, m.payload.data(), m.payload.size(), m.qos, m.retained);
    if (s.opts.mqtt_version >= 5 && (!m.response_topic.empty() || !m.correlation_data.empty())) {
      ::mqtt::properties props;
      if (!m.response_topic.empty())
        props.add({::mqtt::property::RESPONSE_TOPIC, m.response_topic});
      if (!m.correlation_data.empty())
        props.add({::mqtt::property::CORRELATION_DATA, m.correlation_data});
      msg->set_properties(std::move(props));
    }
  } catch (const std::exception& e) {
    return make_error(errc::bad_request, "publish to " + m.topic + ": " + e.what());
  }
  {
    std::lock_guard lock(s.mu);
    if (!s.session_up)
      return make_error(errc::unavailable,
                        "not connected to " + s.opts.server_uri + ", dropped " + m.topic);
    if (s.backlog.size() >= static_cast<std::size_t>(std::max(1, s.opts.max_buffered)))
      return make_error(errc::unavailable, "publish buffer full (" +
                                               std::to_string(s.backlog.size()) +
                                               " messages), dropped " + m.topic);
    s.backlog_bytes += m.payload.size();
    s.backlog.push_back(std::move(msg));
  }
  s.drain();
  return {};
}

std::uint64_t client::queued_bytes() const {
  std::lock_guard lock(impl_->mu);
  return impl_->backlog_bytes;
}

bool client::wait_queued_below(std::uint64_t limit, std::chrono::milliseconds timeout) {
  auto& s = *impl_;
  std::unique_lock lock(s.mu);
  // Messages count too: publish() refuses past max_buffered whatever their size.
  const auto room = [&] {
    return s.backlog_bytes < limit &&
           s.backlog.size() < static_cast<std::size_t>(std::max(1, s.opts.max_buffered / 2));
  };
  if (tl_callback_depth > 0) return room();
  return s.cv.wait_for(lock, timeout, room);
}

void client::disconnect(std::chrono::milliseconds timeout) {
  auto& s = *impl_;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool was_ready = false;
  {
    std::unique_lock lock(s.mu);
    if (!s.started) return;
    s.started = false;
    // Let queued messages go out first, as Paho does with its own queue.
    if (tl_callback_depth == 0)
      s.cv.wait_until(lock, deadline, [&] {
        return !s.session_up || (s.backlog.empty() && s.in_window == 0 && !s.draining);
      });
    if (!s.backlog.empty())
      spdlog::warn("mqtt {}: disconnecting with {} unsent message(s)", s.opts.client_id,
                   s.backlog.size());
    s.backlog.clear();
    s.backlog_bytes = 0;
  }
  const auto left =
      std::max(std::chrono::milliseconds(0), std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 deadline - std::chrono::steady_clock::now()));
  try {
    // Also stops automatic reconnects when there is no connection to close right now.
    auto tok = s.cli.disconnect(static_cast<int>(left.count()));
    if (tl_callback_depth == 0) tok->wait_for(left + std::chrono::milliseconds(500));
  } catch (const ::mqtt::exception&) {
    // Not connected (Paho says so by throwing): nothing to close.
  }
  nodelay::forget_closed();
  {
    std::lock_guard lock(s.mu);
    was_ready = s.ready;
    s.ready = false;
    s.session_up = false;
    ++s.generation;
  }
  s.cv.notify_all();
  spdlog::info("mqtt {}: disconnected from {}", s.opts.client_id, s.opts.server_uri);
  if (was_ready) s.notify_state(false);
}

const client_options& client::options() const {
  return impl_->opts;
}

}  // namespace otter::mqtt
