#pragma once
// The project's only door to MQTT. It wraps Eclipse Paho (C++ 1.2.0 over C 1.3.12) so that
// nothing else sees Paho types, and it works around what Paho gets wrong for a request/answer
// service:
//  - TCP_NODELAY on the broker connection: Paho never sets it, and a QoS 1 exchange then waits
//    on Nagle + delayed ACK (~90 ms instead of ~0.2 ms on loopback);
//  - publishes are queued here and fed to Paho only while its in-flight window has room: Paho
//    does not wake its send thread when an acknowledgement frees the window, so anything queued
//    behind a full window (20 with Mosquitto and MQTT 5) waited up to 1 s per batch; the same
//    queue replaces Paho's ~100-message buffer limit with `max_buffered`;
//  - MQTT 5 requested where Paho needs it (client creation *and* connect);
//  - subscriptions re-made after every automatic reconnect (a clean session forgets them);
//  - no exceptions: failures come back as otter::result.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "protocol/error.hpp"

namespace otter::mqtt {

struct message {
  std::string topic{};
  std::string payload{};  // bytes, not necessarily UTF-8
  int qos = 1;
  bool retained = false;
  // MQTT 5 request/response properties; empty when absent. Ignored (not sent) on MQTT 3.1.1.
  std::string response_topic{};
  std::string correlation_data{};
};

struct client_options {
  std::string server_uri{};  // "tcp://host:port" ("ssl://" once TLS options exist)
  std::string client_id{};
  std::string username{};  // empty: none
  std::string password{};  // empty: none; never logged
  int mqtt_version = 5;    // 4 = MQTT 3.1.1, 5 = MQTT 5
  // false keeps the broker-side session (on MQTT 5 with a session expiry of "never").
  bool clean_session = true;
  std::chrono::seconds keep_alive{30};
  std::chrono::seconds connect_timeout{10};  // per attempt
  int max_inflight = 1024;        // unacknowledged QoS 1/2 publishes (the broker may allow fewer)
  int max_buffered = 100000;      // publishes queued in the client before publish() refuses
  std::optional<message> will{};  // e.g. retained "offline" on the service state topic
  // Reconnect backoff: doubles from min to max. Whole seconds, because that is Paho's unit;
  // Paho also checks for due reconnects only every ~3 s, so a reconnect takes 1–4 s at best.
  std::chrono::seconds min_retry{1};
  std::chrono::seconds max_retry{10};
  // Set TCP_NODELAY on the broker socket. Turning it off has effect only if no other client of
  // this process talks to the same broker with it on (the fix works per broker, not per client).
  bool tcp_nodelay = true;
};

// One MQTT connection with automatic reconnect. Thread-safe: every member may be called from
// any thread, publish() and subscribe() also from inside the handlers. The handlers run on
// Paho's callback thread, one at a time for all clients of the process; keep them short.
// Called from a handler, the blocking calls (connect, wait_connected, subscribe, disconnect)
// do not wait, since they would wait for the very thread they block. The client must not be
// destroyed from inside its own handler.
class client {
 public:
  using message_handler = std::function<void(const message&)>;
  using state_handler = std::function<void(bool connected)>;

  // Throws std::invalid_argument if Paho rejects the options (e.g. an unknown URI scheme).
  explicit client(client_options options);
  // Waits for a running handler to return, then disconnects cleanly (flushing queued messages
  // for up to 2 s). No handler is called once the destructor has started.
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  // Best set before connecting; replacing one later is safe. Exceptions from handlers are
  // logged and swallowed (they must not unwind through Paho's C code).
  void on_message(message_handler handler);
  // Called with true once connected *and* every remembered subscription is acknowledged, with
  // false when that connection is lost or disconnect() is called.
  void on_state(state_handler handler);

  // Remembers the subscription; it is re-made on every (re)connect. If connected, subscribes
  // now and waits up to `timeout` for the broker's answer (not at all when zero, or when
  // called from a handler). Errors: unavailable (timeout), forbidden (the broker refused).
  result<void> subscribe(std::string filter, int qos,
                         std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Forgets the subscription (no reconnect makes it again). If connected, unsubscribes now and
  // waits up to `timeout` for the broker's answer. What the broker sent before it has been
  // delivered to the handler by then; a broker may still deliver messages it had queued for
  // this client (MQTT 3.1.1 3.10.4), so expect a few more. Errors: unavailable.
  result<void> unsubscribe(const std::string& filter,
                           std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // start_connect() and wait_connected(). On timeout the client keeps trying in the background.
  result<void> connect(std::chrono::milliseconds timeout);
  // Starts connecting and returns at once; then reconnects forever until disconnect(). Lets a
  // simulator bring up thousands of clients in parallel. No-op if already started.
  void start_connect();
  // Waits until connected() or the timeout; unavailable carries the last connect error,
  // forbidden comes at once when the broker refused the credentials (retrying goes on).
  result<void> wait_connected(std::chrono::milliseconds timeout);
  // Connected and every remembered subscription acknowledged.
  bool connected() const;

  // Queues a message; queued messages keep their order and survive a reconnect. Never throws:
  // unavailable when not connected or the queue is full, bad_request for an invalid QoS or
  // topic. Success means queued, not delivered. QoS 1 across a reconnect needs
  // clean_session=false: with a clean session the broker forgets what was in flight.
  result<void> publish(std::string_view topic, std::string_view payload, int qos = 1,
                       bool retained = false);
  // Also sends response_topic / correlation_data on MQTT 5.
  result<void> publish(const message& m);

  // Payload bytes publish() has queued and not yet handed to the connection: messages waiting
  // for room in the in-flight window (a slow broker) or for a reconnect.
  std::uint64_t queued_bytes() const;
  // Waits up to `timeout` until queued_bytes() < limit and fewer than half of max_buffered
  // messages are queued; false if not. Lets a bulk sender slow down with the broker instead of
  // filling memory (or the queue, for everyone). Does not wait inside a handler.
  bool wait_queued_below(std::uint64_t limit, std::chrono::milliseconds timeout);

  // Waits up to `timeout` for queued messages to be acknowledged, sends DISCONNECT and stops
  // reconnecting; what is still queued is dropped. The will is not published.
  // start_connect() may be called again afterwards.
  void disconnect(std::chrono::milliseconds timeout);

  const client_options& options() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace otter::mqtt
