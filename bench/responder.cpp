#include "responder.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "mqtt/client.hpp"
#include "options.hpp"
#include "protocol/topics.hpp"

namespace otter::bench {
namespace {

std::atomic<bool> g_stop{false};

void on_signal(int) {
  g_stop = true;
}

std::uint64_t arg_u64(const std::vector<std::string>& args, const std::string& name) {
  for (std::size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] != name) continue;
    std::uint64_t v = 0;
    const auto& s = args[i + 1];
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc{} && p == s.data() + s.size()) return v;
  }
  throw std::invalid_argument("responder: " + name + " N is required");
}

}  // namespace

std::string padded_offer(std::string_view req, std::size_t size) {
  std::string out = "{\"req\":" + nlohmann::json(req).dump() + ",\"update\":true,\"manifest\":\"";
  const std::size_t tail = 2;  // "}
  if (out.size() + tail < size) out.append(size - out.size() - tail, 'x');
  out += "\"}";
  return out;
}

int run_responder(const std::vector<std::string>& args) {
  const auto offer_size = arg_u64(args, "--offer-size");
  const auto image_size = arg_u64(args, "--image-size");
  auto env = stack_from_environment();
  if (!env) {
    std::cerr << "responder: " << env.error().message << "\n";
    return 2;
  }
  ::signal(SIGTERM, on_signal);
  ::signal(SIGINT, on_signal);

  const protocol::topics topics("ota/v1");
  mqtt::client_options o;
  o.server_uri = env->mqtt_url;
  o.client_id = "otter-bench-responder-" + std::to_string(::getpid());
  o.username = env->service_user;
  o.password = env->service_password;
  mqtt::client client(o);
  const std::string zeros(64 * 1024, '\0');
  std::atomic<std::uint64_t> checks{0}, chunks{0}, refused{0};

  client.on_message([&](const mqtt::message& m) {
    const auto t = topics.parse(m.topic);
    if (!t) return;
    // As little as a real responder can do: parse the request, answer it.
    const auto body = nlohmann::json::parse(m.payload, nullptr, false);
    if (!body.is_object()) {
      refused++;
      return;
    }
    if (t->kind == protocol::topic_kind::device_check) {
      checks++;
      (void)client.publish(topics.offer(t->subject),
                           padded_offer(body.value("req", ""), offer_size));
    } else if (t->kind == protocol::topic_kind::device_chunk) {
      const auto file = body.value("file", "");
      const auto len = body.value("len", std::uint64_t{0});
      const auto count = body.value("count", std::uint64_t{0});
      auto offset = body.value("offset", std::uint64_t{0});
      if (len == 0 || len > zeros.size() || count == 0 || count > 256) {
        refused++;
        return;
      }
      for (std::uint64_t i = 0; i < count && offset < image_size; ++i) {
        const auto n = std::min(len, image_size - offset);
        (void)client.publish(topics.chunk(t->subject, file, offset),
                             std::string_view(zeros.data(), n));
        offset += n;
        chunks++;
      }
    }
  });
  (void)client.subscribe(topics.device_up_filter(), 1);
  if (auto r = client.connect(std::chrono::seconds(15)); !r) {
    std::cerr << "responder: " << r.error().message << "\n";
    return 1;
  }
  std::cout << "responder ready" << std::endl;
  while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  client.disconnect(std::chrono::seconds(2));
  std::cout << "responder done: checks=" << checks.load() << " chunks=" << chunks.load()
            << " refused=" << refused.load() << std::endl;
  return 0;
}

}  // namespace otter::bench
