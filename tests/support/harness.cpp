#include "support/harness.hpp"

#include <cstdlib>
#include <random>
#include <stdexcept>

#include "crypto/hash.hpp"
#include "crypto/jws.hpp"
#include "support/files.hpp"

namespace otter::test {
namespace {

std::string need_env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v)
    throw std::runtime_error(std::string(name) +
                             " is not set: run `bash scripts/stack.sh start` and "
                             "`eval \"$(bash scripts/stack.sh env)\"` (scripts/test.sh does both)");
  return v;
}

}  // namespace

std::string random_image(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

std::string random_hex(std::size_t bytes) {
  return crypto::to_hex(crypto::random_bytes(bytes));
}

stack_env stack_env::from_environment() {
  stack_env e;
  e.mqtt_url = need_env("OTTER_TEST_MQTT_URL");
  e.service_user = need_env("OTTER_TEST_MQTT_SERVICE_USER");
  e.service_password = need_env("OTTER_TEST_MQTT_SERVICE_PASSWORD");
  e.operator_password = need_env("OTTER_TEST_MQTT_OPERATOR_PASSWORD");
  return e;
}

peer::peer(const std::string& url, const std::string& client_id, const std::string& user,
           const std::string& password, int mqtt_version) {
  mqtt::client_options o;
  o.server_uri = url;
  o.client_id = client_id;
  o.username = user;
  o.password = password;
  o.mqtt_version = mqtt_version;
  client_ = std::make_unique<mqtt::client>(o);
  client_->on_message([this](const mqtt::message& m) {
    std::lock_guard lock(mu_);
    inbox_.push_back(m);
    cv_.notify_all();
  });
}

peer::~peer() {
  client_->disconnect(2s);
}

void peer::start_connect() {
  client_->start_connect();
}

void peer::wait_connected(std::chrono::milliseconds timeout) {
  auto r = client_->wait_connected(timeout);
  if (!r) throw std::runtime_error("MQTT peer did not connect: " + r.error().message);
}

void peer::subscribe(const std::string& filter) {
  auto r = client_->subscribe(filter, 1);
  if (!r) throw std::runtime_error("subscribe " + filter + ": " + r.error().message);
}

void peer::publish(const std::string& topic, const std::string& payload, bool retained) {
  auto r = client_->publish(topic, payload, 1, retained);
  if (!r) throw std::runtime_error("publish " + topic + ": " + r.error().message);
}

std::optional<mqtt::message> peer::wait(const std::string& topic,
                                        std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  std::optional<mqtt::message> found;
  cv_.wait_for(lock, timeout, [&] {
    for (auto it = inbox_.begin(); it != inbox_.end(); ++it) {
      if (it->topic == topic) {
        found = std::move(*it);
        inbox_.erase(it);
        return true;
      }
    }
    return false;
  });
  return found;
}

std::optional<nlohmann::json> peer::wait_json(const std::string& topic, const std::string& key,
                                              const nlohmann::json& value,
                                              std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  std::optional<nlohmann::json> found;
  cv_.wait_for(lock, timeout, [&] {
    for (auto it = inbox_.begin(); it != inbox_.end(); ++it) {
      if (it->topic != topic) continue;
      auto j = nlohmann::json::parse(it->payload, nullptr, false);
      if (j.is_object() && j.contains(key) && j[key] == value) {
        found = std::move(j);
        inbox_.erase(it);
        return true;
      }
    }
    return false;
  });
  return found;
}

std::size_t peer::count(const std::string& topic) {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  for (const auto& m : inbox_) n += m.topic == topic;
  return n;
}

device::device(const stack_env& env, const protocol::topics& topics, std::string id)
    : id_(std::move(id)), topics_(topics), peer_(env.mqtt_url, id_) {
  peer_.subscribe(topics_.device_down_filter(id_));
  peer_.start_connect();
}

void device::connect_started() {
  peer_.wait_connected();
}

std::optional<offer> device::check(const crypto::ec_key& pub, const std::string& model,
                                   const std::string& version, const nlohmann::json& attrs) {
  const std::string req = "c-" + std::to_string(++seq_);
  nlohmann::json body = {
      {"req", req}, {"model", model}, {"version", version}, {"nonce", random_hex(16)}};
  if (!attrs.is_null()) body["attrs"] = attrs;
  peer_.publish(topics_.device_check(id_), body.dump());
  auto answer = peer_.wait_json(topics_.offer(id_), "req", req, 10s);
  if (!answer) {
    auto err = peer_.wait_json(topics_.error(id_), "req", req, 1s);
    last_error = err ? *err : nlohmann::json("no answer");
    return std::nullopt;
  }
  offer o;
  o.answer = *answer;
  auto v = crypto::jws_verify(pub, (*answer)["manifest"].get<std::string>());
  o.signature_ok = v.ok();
  if (v) {
    o.header = v->header;
    o.claims = v->claims;
    if (o.claims.value("nonce", "") != body["nonce"]) o.signature_ok = false;  // replay guard
  }
  return o;
}

std::optional<nlohmann::json> device::send_raw(const std::string& subtopic,
                                               const std::string& payload,
                                               const std::string& expect_topic) {
  peer_.publish(topics_.root() + "/dev/" + id_ + "/up/" + subtopic, payload);
  auto m = peer_.wait(expect_topic, 10s);
  if (!m) return std::nullopt;
  return nlohmann::json::parse(m->payload, nullptr, false);
}

void device::status(const nlohmann::json& body) {
  peer_.publish(topics_.device_status(id_), body.dump());
}

std::optional<nlohmann::json> device::wait_error(std::chrono::milliseconds timeout) {
  auto m = peer_.wait(topics_.error(id_), timeout);
  if (!m) return std::nullopt;
  return nlohmann::json::parse(m->payload, nullptr, false);
}

operator_client::operator_client(const stack_env& env, const protocol::topics& topics,
                                 std::string name)
    : name_(std::move(name)),
      topics_(topics),
      peer_(env.mqtt_url, name_ + "-" + random_hex(4), name_, env.operator_password) {
  peer_.subscribe(topics_.admin_response(name_));
  peer_.start_connect();
  peer_.wait_connected();
}

nlohmann::json operator_client::cmd(const std::string& cmd, const nlohmann::json& args,
                                    std::chrono::milliseconds timeout) {
  const std::string id = "a-" + std::to_string(++seq_);
  nlohmann::json req = {{"id", id}, {"cmd", cmd}, {"args", args}};
  return raw(req.dump(), id, timeout);
}

nlohmann::json operator_client::raw(const std::string& payload, const std::string& expect_id,
                                    std::chrono::milliseconds timeout) {
  peer_.publish(topics_.admin_request(name_), payload);
  nlohmann::json id = expect_id.empty() ? nlohmann::json(nullptr) : nlohmann::json(expect_id);
  auto r = peer_.wait_json(topics_.admin_response(name_), "id", id, timeout);
  return r ? *r : nlohmann::json("no answer");
}

nlohmann::json operator_client::upload(const std::string& upload_id, const std::string& bytes,
                                       std::chrono::milliseconds timeout) {
  peer_.publish(topics_.admin_upload(name_, upload_id), bytes);
  auto r = peer_.wait_json(topics_.admin_response(name_), "id", upload_id, timeout);
  return r ? *r : nlohmann::json("no answer");
}

void otter_fixture::SetUp() {
  env_ = stack_env::from_environment();
  db_ = std::make_unique<scratch_db>();
  dir_ = std::filesystem::temp_directory_path() / ("otter-it-" + random_hex(6));
  std::filesystem::create_directories(dir_);
  key_path_ = dir_ / "signing.pem";
  auto k = crypto::ec_key::generate();
  ASSERT_TRUE(crypto::write_private_file(key_path_, k.private_pem()).ok());
  pub_ = crypto::ec_key::from_public_pem(k.public_pem()).value();
  key_ = std::move(k);
  topics_ = std::make_unique<protocol::topics>("ota/v1");
  instance_ = "it-" + random_hex(4);
  start_otterd();
  admin_ = std::make_unique<operator_client>(env_, *topics_, "admin1");
}

void otter_fixture::TearDown() {
  admin_.reset();
  if (otterd_) {
    const int status = otterd_->stop();
    if (status != 0 || HasFailure()) {
      std::cerr << "---- otterd log ----\n" << otterd_->log().substr(0, 20000) << "\n----\n";
    }
    EXPECT_EQ(status, 0) << "otterd did not exit cleanly";
  }
  otterd_.reset();
  db_.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::map<std::string, std::string> otter_fixture::otterd_env() const {
  return {{"OTTER_MQTT_URL", env_.mqtt_url},
          {"OTTER_MQTT_USER", env_.service_user},
          {"OTTER_MQTT_PASSWORD", env_.service_password},
          {"OTTER_MQTT_CLIENT_ID", "otterd-" + instance_},
          {"OTTER_DB_URL", db_->url()},
          {"OTTER_SIGNING_KEY", key_path_.string()},
          {"OTTER_DATA_DIR", (dir_ / "data").string()},
          {"OTTER_OPERATORS", "admin1:admin,admin2:admin,viewer1:viewer"},
          {"OTTER_INSTANCE", instance_},
          {"OTTER_LOG_LEVEL", "debug"}};
}

void otter_fixture::start_otterd(const std::map<std::string, std::string>& extra) {
  auto env = otterd_env();
  for (const auto& [k, v] : extra) env[k] = v;
  otterd_ = std::make_unique<otterd_process>(env, dir_);
  ASSERT_TRUE(otterd_->wait_ready()) << otterd_->log();
}

std::string otter_fixture::scratch_file(const std::string& name, std::string_view bytes) const {
  const auto p = dir_ / name;
  write_file(p, bytes);
  return p.string();
}

int otter_fixture::stop_otterd() {
  const int status = otterd_->stop();
  if (status != 0) std::cerr << "---- otterd log ----\n" << otterd_->log() << "\n----\n";
  otterd_.reset();
  return status;
}

nlohmann::json otter_fixture::add_release(const std::string& model, const std::string& version,
                                          const std::string& bytes,
                                          const nlohmann::json& extra_args) {
  auto up = admin_->upload("u-" + random_hex(4), bytes);
  EXPECT_EQ(up.value("ok", false), true) << up.dump();
  nlohmann::json args = {
      {"model", model}, {"version", version}, {"sha256", up["result"]["sha256"]}};
  if (extra_args.is_object())
    for (const auto& [k, v] : extra_args.items()) args[k] = v;
  auto r = admin_->cmd("release.add", args);
  EXPECT_EQ(r.value("ok", false), true) << r.dump();
  return r.value("result", nlohmann::json());
}

std::string otter_fixture::create_rollout(const std::string& model, const std::string& version,
                                          const nlohmann::json& target, bool allow_downgrade) {
  auto r = admin_->cmd("rollout.create", {{"name", "r-" + version},
                                          {"model", model},
                                          {"version", version},
                                          {"target", target},
                                          {"allow_downgrade", allow_downgrade}});
  EXPECT_EQ(r.value("ok", false), true) << r.dump();
  return r.contains("result") ? r["result"].value("id", "") : "";
}

}  // namespace otter::test
