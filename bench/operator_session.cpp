#include "operator_session.hpp"

#include <unistd.h>

namespace otter::bench {

operator_session::operator_session(const stack_env& env, const protocol::topics& topics,
                                   std::string name)
    : name_(std::move(name)), topics_(topics) {
  mqtt::client_options o;
  o.server_uri = env.mqtt_url;
  o.client_id = name_ + "-bench-" + std::to_string(::getpid());
  o.username = name_;
  o.password = env.operator_password;
  client_ = std::make_unique<mqtt::client>(o);
  client_->on_message([this](const mqtt::message& m) {
    auto j = nlohmann::json::parse(m.payload, nullptr, false);
    if (!j.is_object() || !j.contains("id") || !j["id"].is_string()) return;
    auto id = j["id"].get<std::string>();  // before the move below
    std::lock_guard lock(mu_);
    answers_[id] = std::move(j);
    cv_.notify_all();
  });
  (void)client_->subscribe(topics_.admin_response(name_), 1);
}

result<void> operator_session::connect(std::chrono::milliseconds timeout) {
  return client_->connect(timeout);
}

result<nlohmann::json> operator_session::await(const std::string& id,
                                               std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return answers_.contains(id); }))
    return make_error(errc::unavailable, "no answer from otterd to " + id + " within " +
                                             std::to_string(timeout.count()) + " ms");
  auto j = std::move(answers_[id]);
  answers_.erase(id);
  if (!j.value("ok", false)) {
    const auto err = j.value("error", nlohmann::json::object());
    return make_error(errc::internal, id + " refused: " + err.value("code", "?") + ": " +
                                          err.value("message", j.dump()));
  }
  return j.value("result", nlohmann::json::object());
}

result<nlohmann::json> operator_session::cmd(const std::string& name, const nlohmann::json& args,
                                             std::chrono::milliseconds timeout) {
  const auto id = "bench-" + std::to_string(++seq_);
  const nlohmann::json req = {{"id", id}, {"cmd", name}, {"args", args}};
  if (auto r = client_->publish(topics_.admin_request(name_), req.dump()); !r) return r.error();
  return await(id, timeout);
}

result<nlohmann::json> operator_session::upload(const std::string& upload_id,
                                                std::string_view bytes,
                                                std::chrono::milliseconds timeout) {
  if (auto r = client_->publish(topics_.admin_upload(name_, upload_id), bytes); !r)
    return r.error();
  return await(upload_id, timeout);
}

}  // namespace otter::bench
