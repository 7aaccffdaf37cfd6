#pragma once
// Each test owns its broker, like Mosquitto's own suite: a private config on a private port, so
// tests never depend on (or disturb) a broker someone else runs, and can kill and restart it.
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

namespace otter::test {

struct broker_options {
  // 0 picks a free loopback port; OTTER_TEST_MQTT_PORT in the environment overrides a 0 here.
  std::uint16_t port = 0;
  // set_tcp_nodelay: Mosquitto, like Paho, leaves Nagle on by default, and then every answer
  // the broker relays right after an acknowledgement waits ~40 ms for a delayed ACK. A
  // deployment that cares about latency sets it (see broker-config/); tests do by default.
  bool tcp_nodelay = true;
  // Appended to the generated mosquitto.conf, e.g. "max_queued_messages 0\n".
  std::string extra_config{};
  std::string executable = "/usr/sbin/mosquitto";
  std::chrono::milliseconds start_timeout{5000};
};

// A mosquitto child process listening on 127.0.0.1. Throws std::runtime_error when it cannot
// start (the message carries the broker's log). Not thread-safe; the destructor stops it.
class broker_process {
 public:
  explicit broker_process(broker_options options = {});
  ~broker_process();
  broker_process(const broker_process&) = delete;
  broker_process& operator=(const broker_process&) = delete;

  std::uint16_t port() const { return port_; }
  // "tcp://127.0.0.1:<port>", what otter::mqtt::client_options::server_uri wants.
  std::string uri() const;
  bool running() const { return pid_ > 0; }
  // The broker's stdout and stderr so far.
  std::string log() const;

  // Starts the broker on port() and waits until the port accepts TCP connections.
  void start();
  // SIGTERM, then SIGKILL if it has not exited within two seconds; waits for the child.
  void stop();
  // stop() then start() on the same port, which is what clients must survive.
  void restart();

 private:
  broker_options options_;
  std::uint16_t port_ = 0;
  std::filesystem::path dir_;
  pid_t pid_ = -1;
};

}  // namespace otter::test
