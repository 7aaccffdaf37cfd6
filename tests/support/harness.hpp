#pragma once
// The integration tests' view of a running otter: the stack from scripts/stack.sh, a scratch
// database, otterd as a child process, and MQTT peers that act as devices and operators.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/ec_key.hpp"
#include "mqtt/client.hpp"
#include "protocol/topics.hpp"
#include "support/otterd_process.hpp"
#include "support/test_db.hpp"

namespace otter::test {

using namespace std::chrono_literals;

// What scripts/stack.sh exported; throws with instructions when it was not.
struct stack_env {
  std::string mqtt_url;
  std::string service_user;
  std::string service_password;
  std::string operator_password;
  static stack_env from_environment();
};

// An MQTT client that keeps what it receives, for tests to wait on.
class peer {
 public:
  peer(const std::string& url, const std::string& client_id, const std::string& user = "",
       const std::string& password = "", int mqtt_version = 5);
  ~peer();
  void start_connect();
  void wait_connected(std::chrono::milliseconds timeout = 10s);
  void subscribe(const std::string& filter);
  void publish(const std::string& topic, const std::string& payload, bool retained = false);
  // The first received message on exactly `topic` (removed from the inbox), or nullopt.
  std::optional<mqtt::message> wait(const std::string& topic,
                                    std::chrono::milliseconds timeout = 10s);
  // Like wait, for a JSON payload whose `key` equals `value`.
  std::optional<nlohmann::json> wait_json(const std::string& topic, const std::string& key,
                                          const nlohmann::json& value,
                                          std::chrono::milliseconds timeout = 10s);
  std::size_t count(const std::string& topic);
  mqtt::client& raw() { return *client_; }

 private:
  std::unique_ptr<mqtt::client> client_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<mqtt::message> inbox_;
};

struct offer {
  nlohmann::json answer;  // {"req", "update", "manifest"}
  nlohmann::json header;
  nlohmann::json claims;
  bool signature_ok = false;
};

// A test device: client id = device id, as the broker's ACL wants.
class device {
 public:
  device(const stack_env& env, const protocol::topics& topics, std::string id);
  void connect_started();  // after start_connect on many, wait here
  // Sends a check and returns the verified offer (or nullopt with an error answer in last_error).
  std::optional<offer> check(const crypto::ec_key& pub, const std::string& model,
                             const std::string& version, const nlohmann::json& attrs = nullptr);
  std::optional<nlohmann::json> send_raw(const std::string& subtopic, const std::string& payload,
                                         const std::string& expect_topic);
  void status(const nlohmann::json& body);
  std::optional<nlohmann::json> wait_error(std::chrono::milliseconds timeout = 10s);
  const std::string& id() const { return id_; }
  peer& mqtt() { return peer_; }
  nlohmann::json last_error;

 private:
  std::string id_;
  const protocol::topics& topics_;
  peer peer_;
  int seq_ = 0;
};

// An operator: username = operator name, as the broker's ACL wants.
class operator_client {
 public:
  operator_client(const stack_env& env, const protocol::topics& topics, std::string name);
  // Sends {"id","cmd","args"} and returns the response.
  nlohmann::json cmd(const std::string& cmd, const nlohmann::json& args = nlohmann::json::object(),
                     std::chrono::milliseconds timeout = 15s);
  nlohmann::json raw(const std::string& payload, const std::string& expect_id,
                     std::chrono::milliseconds timeout = 10s);
  nlohmann::json upload(const std::string& upload_id, const std::string& bytes,
                        std::chrono::milliseconds timeout = 20s);
  peer& mqtt() { return peer_; }

 private:
  std::string name_;
  const protocol::topics& topics_;
  peer peer_;
  int seq_ = 0;
};

// One otterd against the stack with a scratch database, a fresh key and three operators:
// admin1 and admin2 (admin), viewer1 (viewer). ghost is a broker user otterd does not know.
class otter_fixture : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // (Re)starts otterd with the fixture's settings plus `extra` environment.
  void start_otterd(const std::map<std::string, std::string>& extra = {});
  int stop_otterd();
  std::map<std::string, std::string> otterd_env() const;

  // Uploads bytes and adds a release; returns the release JSON.
  nlohmann::json add_release(const std::string& model, const std::string& version,
                             const std::string& bytes, const nlohmann::json& extra_args = {});
  // Creates a rollout and returns its id.
  std::string create_rollout(const std::string& model, const std::string& version,
                             const nlohmann::json& target, bool allow_downgrade = false);
  // Writes bytes to dir_/name (the fixture's scratch folder) and returns the path.
  std::string scratch_file(const std::string& name, std::string_view bytes) const;

  stack_env env_;
  std::unique_ptr<scratch_db> db_;
  std::filesystem::path dir_;
  std::filesystem::path key_path_;
  std::optional<crypto::ec_key> key_;
  std::optional<crypto::ec_key> pub_;
  std::unique_ptr<protocol::topics> topics_;
  std::unique_ptr<otterd_process> otterd_;
  std::unique_ptr<operator_client> admin_;
  std::string instance_;
};

std::string random_hex(std::size_t bytes);
// `n` bytes from a seeded generator: an image a test can make again.
std::string random_image(std::size_t n, unsigned seed);

}  // namespace otter::test
