#pragma once
// An operator on the admin topics (PROTOCOL.md "Operator topics"): what the bench uses to
// upload its image and create a rollout, as otterctl would.
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "mqtt/client.hpp"
#include "options.hpp"
#include "protocol/error.hpp"
#include "protocol/topics.hpp"

namespace otter::bench {

class operator_session {
 public:
  // name: a broker account of the stack (admin1, ...) that otterd knows as an operator.
  operator_session(const stack_env& env, const protocol::topics& topics, std::string name);
  result<void> connect(std::chrono::milliseconds timeout);
  // The `result` of a successful answer; the answer's error (code and message) otherwise.
  result<nlohmann::json> cmd(const std::string& name, const nlohmann::json& args,
                             std::chrono::milliseconds timeout = std::chrono::seconds(30));
  result<nlohmann::json> upload(const std::string& upload_id, std::string_view bytes,
                                std::chrono::milliseconds timeout = std::chrono::seconds(60));

 private:
  result<nlohmann::json> await(const std::string& id, std::chrono::milliseconds timeout);

  std::string name_;
  const protocol::topics& topics_;
  std::unique_ptr<mqtt::client> client_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, nlohmann::json> answers_;  // by id
  int seq_ = 0;
};

}  // namespace otter::bench
