// The device-facing handler of otterd (src/service/device_handler) with in-memory fakes for the
// broker and the database: a sequence of messages from one device, as the broker would deliver
// them. Checks the contract's promises, not just "no crash": every check is answered exactly
// once, by a signed offer for that device and that req or by an error with a documented code;
// every other refusal is an error message; everything recorded serialises as it is.
// Input: messages separated by 0xFF (never in UTF-8); each message's first byte picks its topic
// (c check, s status, k chunk, anything else an unknown sub-topic), the rest is the payload.
#include <spdlog/spdlog.h>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/jws.hpp"
#include "fuzz_check.hpp"
#include "protocol/messages.hpp"
#include "protocol/topics.hpp"
#include "service/device_handler.hpp"

namespace {

using namespace otter;
using nlohmann::json;

constexpr const char* kDevice = "dev-fuzz";

struct sent {
  std::string topic, payload;
};

class fake_outbox final : public service::outbox {
 public:
  void publish(const std::string& topic, std::string_view payload, int, bool) override {
    out.push_back({topic, std::string(payload)});
  }
  std::vector<sent> out;
};

class fake_recorder final : public service::recorder {
 public:
  bool submit(store::record_set&& set) override {
    for (const auto& e : set.events) {
      // Strict serialisation: what is recorded must be recordable as it is (the store would
      // otherwise replace bytes).
      (void)e.data.dump();
      OTTER_FUZZ_CHECK(!e.kind.empty());
      if (e.device) OTTER_FUZZ_CHECK(*e.device == kDevice);
    }
    ++sets;
    return accept;
  }
  bool accept = true;
  int sets = 0;
};

const crypto::ec_key& signer() {
  static const crypto::ec_key key = crypto::ec_key::generate();
  return key;
}

rollout::catalog make_catalog() {
  rollout::catalog c;
  rollout::release r;
  r.id = 1;
  r.model = "esp32-devkitc";
  r.version_text = "1.1.0";
  r.version = *protocol::parse_semver("1.1.0");
  r.sha256 = std::string(64, 'a');
  r.size = 1500000;
  c.releases.push_back(r);
  rollout::rollout ro;
  ro.id = 17;
  ro.id_text = "17";
  ro.name = "fuzz";
  ro.release_id = 1;
  c.rollouts.push_back(ro);
  c.index();
  return c;
}

const std::set<std::string>& device_codes() {
  static const std::set<std::string> codes = {"bad_request",  "forbidden",   "not_found", "range",
                                              "rate_limited", "unavailable", "internal"};
  return codes;
}

// One message in, its answers checked.
void one(service::device_handler& h, const protocol::topics& topics, fake_outbox& out, char which,
         std::string_view payload) {
  const std::string sub = which == 'c'   ? "check"
                          : which == 's' ? "status"
                          : which == 'k' ? "chunk"
                                         : "reboot";
  auto parsed = topics.parse("ota/v1/dev/" + std::string(kDevice) + "/up/" + sub);
  OTTER_FUZZ_CHECK(parsed.has_value());
  const std::size_t before = out.out.size();
  h.handle(*parsed, payload);
  const std::size_t answers = out.out.size() - before;

  // The req the answer must echo, when the payload had a readable one.
  std::optional<std::string> req;
  if (auto obj = protocol::parse_object(payload))
    req = protocol::peek_string(*obj, "req");
  else
    req = protocol::peek_string_unparsed(payload, "req");

  for (std::size_t i = before; i < out.out.size(); ++i) {
    const auto& m = out.out[i];
    const json j = json::parse(m.payload);  // throws (a finding) if not JSON
    OTTER_FUZZ_CHECK(j.is_object());
    if (m.topic == topics.error(kDevice)) {
      OTTER_FUZZ_CHECK(device_codes().count(j.at("code").get<std::string>()) == 1);
      OTTER_FUZZ_CHECK(!j.at("message").get<std::string>().empty());
      if (j.contains("req")) OTTER_FUZZ_CHECK(req && j.at("req") == *req);
    } else {
      OTTER_FUZZ_CHECK(m.topic == topics.offer(kDevice) && which == 'c');
      OTTER_FUZZ_CHECK(req && j.at("req") == *req);
      auto v = crypto::jws_verify(signer(), j.at("manifest").get<std::string>());
      OTTER_FUZZ_CHECK(v.ok());
      OTTER_FUZZ_CHECK(v->claims.at("sub") == kDevice);
      OTTER_FUZZ_CHECK(v->claims.at("update") == j.at("update"));
    }
  }
  // A check is always answered, exactly once; anything refused gets one error; a status that
  // is accepted gets no answer.
  if (which == 'c')
    OTTER_FUZZ_CHECK(answers == 1);
  else
    OTTER_FUZZ_CHECK(answers <= 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const protocol::topics topics("ota/v1");
  static const bool quiet = (spdlog::set_level(spdlog::level::off), true);  // a line per decision
  (void)quiet;
  service::catalog_source catalog;
  catalog.replace(std::make_shared<const rollout::catalog>(make_catalog()));
  service::device_registry devices;
  fake_outbox out;
  fake_recorder records;
  service::manual_clock time(
      std::chrono::system_clock::time_point(std::chrono::seconds(1795000000)));
  service::metrics counters;
  service::device_handler_deps deps{topics,  signer(), catalog, devices,
                                    records, out,      time,    counters};
  deps.download_url = [](const std::string& d, const std::string& sha, std::int64_t exp) {
    return std::optional<std::string>("https://ota.example/v1/images/" + sha + "?d=" + d +
                                      "&exp=" + std::to_string(exp) + "&t=x");
  };
  service::device_handler h(deps, service::manifest_settings{}, "fuzz-1");

  std::string_view in(reinterpret_cast<const char*>(data), size);
  for (int n = 0; n < 8 && !in.empty(); ++n) {
    const auto end = in.find('\xff');
    std::string_view msg = in.substr(0, end);
    in = end == std::string_view::npos ? std::string_view() : in.substr(end + 1);
    if (msg.empty()) continue;
    // An uppercase kind: the record queue is full for this message ("unavailable").
    const char which = msg[0];
    records.accept = !(which >= 'A' && which <= 'Z');
    one(h, topics, out, static_cast<char>(which | 0x20), msg.substr(1));
  }
  return 0;
}
