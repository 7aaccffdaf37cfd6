#pragma once
// Answers the device topics: check -> signed offer, status -> recorded, anything bad -> error.
// Runs on the MQTT callback thread: memory, signing and a queue push, never a database wait.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "crypto/ec_key.hpp"
#include "protocol/error.hpp"
#include "protocol/messages.hpp"
#include "protocol/topics.hpp"
#include "service/chunk_server.hpp"
#include "service/clock.hpp"
#include "service/device_registry.hpp"
#include "service/held_statuses.hpp"
#include "service/manifest.hpp"
#include "service/metrics.hpp"
#include "service/ports.hpp"

namespace otter::service {

struct device_handler_deps {
  const protocol::topics& topics;
  const crypto::ec_key& signer;
  const catalog_source& catalog;
  device_registry& devices;
  recorder& records;
  outbox& out;
  const clock& time;
  metrics& counters;
  chunk_server* chunks = nullptr;  // MQTT downloads; null: refused as unavailable
  // HTTP downloads: the `url` claim for (device, sha256, exp); empty: no url in offers.
  std::function<std::optional<std::string>(const std::string&, const std::string&, std::int64_t)>
      download_url = {};
  // Several instances share the device topics: tell the others of each chunk grant and of
  // each change to a device (any of them may get the device's next message).
  bool shared = false;
  // With shared topics: where a status without "rollout" waits for another instance's offer
  // (null: recorded at once). Releases run on the device's worker (device_queue::post).
  held_statuses* held = nullptr;
};

class device_handler {
 public:
  device_handler(device_handler_deps deps, manifest_settings settings, std::string instance);

  void handle(const protocol::parsed_topic& topic, std::string_view payload);
  // A retained message the broker replays on every subscribe: a status would be recorded and a
  // chunk request served again at each restart of the service. Answered, recorded, not acted on.
  void refuse_retained(const protocol::parsed_topic& topic, std::string_view payload);
  // The device has too many messages waiting to be handled (it sends without waiting for the
  // answers): rate_limited, recorded.
  void refuse_busy(const protocol::parsed_topic& topic, std::string_view payload);
  // Records what the device has waiting in `held`, oldest first, attributed as far as is
  // now known. Run it on the device's worker (or after the workers stopped).
  void release_held(const std::string& device);
  // A chunk request the chunk server held for a grant and then refused.
  void refuse_chunk(const std::string& device, const std::optional<std::string>& req,
                    const error& err) {
    refuse(device, req, err, "chunk");
  }

 private:
  void on_check(const std::string& device, const nlohmann::json& obj);
  void on_status(const std::string& device, const nlohmann::json& obj);
  // The rollout a report belongs to: the one it names (not_found when that cannot be its), or
  // the latest offer of its version known here (nullopt: none).
  result<std::optional<std::int64_t>> rollout_of(const std::string& device,
                                                 const protocol::status_msg& m) const;
  void record_status(const std::string& device, const protocol::status_msg& m,
                     std::optional<std::int64_t> rollout_id, clock::time_point at);
  void on_chunk(const std::string& device, const nlohmann::json& obj);
  // A message refused before it was parsed: req as far as it can be read.
  void refuse_unread(const protocol::parsed_topic& topic, std::string_view payload,
                     const error& err);
  // Answers on R/dev/D/down/error and records an "error" event.
  void refuse(const std::string& device, const std::optional<std::string>& req, const error& err,
              std::string_view what);
  store::event_record event(std::string kind, const std::string& device) const;
  store::device_note status_note(const std::string& device, std::optional<std::int64_t> rollout,
                                 const std::string& version, const std::string& state,
                                 clock::time_point at) const;

  device_handler_deps d_;
  manifest_settings settings_;
  std::string instance_;
};

}  // namespace otter::service
