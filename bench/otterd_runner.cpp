#include "otterd_runner.hpp"

#include <signal.h>

#include <stdexcept>

namespace otter::bench {

otterd_runner::otterd_runner(const stack_env& env, std::string binary, std::filesystem::path dir,
                             int http_port,
                             std::vector<std::pair<std::string, std::string>> extra_env)
    : stack_(env),
      binary_(std::move(binary)),
      dir_(std::move(dir)),
      data_dir_(dir_ / "otterd-data"),
      key_path_(dir_ / "signing.pem"),
      http_port_(http_port),
      extra_env_(std::move(extra_env)) {
  db_ = std::make_unique<scratch_db>(stack_.db_url, "otter_bench");
  const auto kg = run_command({binary_, "keygen", "--out", key_path_.string()});
  if (kg.status != 0)
    throw std::runtime_error("otterd keygen failed (" + std::to_string(kg.status) +
                             "): " + kg.output);
  auto k = crypto::ec_key::from_private_file(key_path_);
  if (!k) throw std::runtime_error("cannot read the key otterd keygen wrote: " + k.error().message);
  key_ = std::move(k).value();
}

otterd_runner::~otterd_runner() {
  if (proc_) proc_->stop(SIGTERM, std::chrono::seconds(20));
  proc_.reset();
}

std::map<std::string, std::string> otterd_runner::env() const {
  // As the integration tests run it (tests/support/harness.cpp), plus HTTP download; the log
  // level is the default (info), as in production: its cost is part of otterd's.
  std::map<std::string, std::string> e{
      {"OTTER_MQTT_URL", stack_.mqtt_url},
      {"OTTER_MQTT_USER", stack_.service_user},
      {"OTTER_MQTT_PASSWORD", stack_.service_password},
      {"OTTER_MQTT_CLIENT_ID", "otterd-bench"},
      {"OTTER_DB_URL", db_->url()},
      {"OTTER_SIGNING_KEY", key_path_.string()},
      {"OTTER_DATA_DIR", data_dir_.string()},
      {"OTTER_OPERATORS", "admin1:admin"},
      {"OTTER_INSTANCE", "bench"},
      {"OTTER_HTTP_ADDR", "127.0.0.1:" + std::to_string(http_port_)},
      {"OTTER_PUBLIC_URL", http_base()},
      {"OTTER_LOG_LEVEL", "info"}};
  for (const auto& [k, v] : extra_env_) e[k] = v;
  return e;
}

void otterd_runner::start() {
  if (proc_) return;
  const auto log = dir_ / ("otterd-" + std::to_string(++starts_) + ".log");
  proc_ = std::make_unique<child_process>(std::vector<std::string>{binary_}, env(), log);
  if (!proc_->wait_for_log({"decision=serving", "decision=mqtt_connected"},
                           std::chrono::seconds(30))) {
    const auto tail = proc_->log_tail(30);
    proc_->stop(SIGKILL, std::chrono::seconds(5));
    proc_.reset();
    throw std::runtime_error("otterd did not come up (log " + log.string() + "):\n" + tail);
  }
}

void otterd_runner::stop() {
  if (!proc_) return;
  const int status = proc_->stop(SIGTERM, std::chrono::seconds(40));
  const auto tail = proc_->log_tail(30);
  const auto path = proc_->log_path();
  proc_.reset();
  if (status != 0)
    throw std::runtime_error("otterd exited with status " + std::to_string(status) + " (log " +
                             path.string() + "):\n" + tail);
}

std::string otterd_runner::log_tail() const {
  return proc_ ? proc_->log_tail(30) : "";
}

}  // namespace otter::bench
