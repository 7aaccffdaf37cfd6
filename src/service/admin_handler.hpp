#pragma once
// Answers the operator topics. Commands touch PostgreSQL, so they run on a worker thread of
// their own, in arrival order, never on the MQTT callback thread.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "protocol/commands.hpp"
#include "protocol/topics.hpp"
#include "service/clock.hpp"
#include "service/image_store.hpp"
#include "service/metrics.hpp"
#include "service/ports.hpp"
#include "service/release_keys.hpp"
#include "store/repository.hpp"

namespace otter::service {

struct admin_handler_deps {
  const protocol::topics& topics;
  store::repository& repo;
  image_store& images;
  recorder& records;
  outbox& out;
  const clock& time;
  metrics& counters;
  std::function<void()> reload_catalog;             // after a change, before the answer
  std::function<void()> flush_records;              // before a read, so it sees every record
  std::function<nlohmann::json()> service_metrics;  // metrics.get
};

struct admin_settings {
  std::map<std::string, config::role> operators;
  std::uint64_t max_upload = 16 * 1024 * 1024;
  std::size_t queue_limit = 256;
  std::string instance;
  // OTTER_RELEASE_KEYS: release.add verifies image_sig against these. Null: an image_sig is
  // stored unchecked (devices verify it).
  std::shared_ptr<const release_key_set> release_keys;
  bool require_signed = false;  // OTTER_REQUIRE_SIGNED: refuse a release.add without image_sig
  // OTTER_UPLOAD_GC: an upload no release references is removed once older than this. The
  // collection runs when the worker starts and then every gc_interval.
  std::chrono::seconds upload_gc{24 * 3600};
  std::chrono::seconds gc_interval{60};
  // OTTER_EVENT_RETENTION (0: keep every event). Pruning runs with the collection, a batch
  // of events per step; while old events remain, steps follow each other prune_pause apart.
  std::chrono::seconds event_retention{0};
  std::size_t prune_batch = 5000;
  std::chrono::milliseconds prune_pause{100};
};

class admin_handler {
 public:
  admin_handler(admin_handler_deps deps, admin_settings settings);
  ~admin_handler();
  void start();
  // Finishes what is queued, then stops.
  void stop();

  // From the MQTT callback thread: queues the message; a full queue is answered at once.
  // `retained`: the broker delivered a stored retained message (it replays one on every
  // subscribe), which is refused rather than run again.
  void submit(const protocol::parsed_topic& topic, std::string payload, bool retained = false);

  // Removes the uploads older than now - upload_gc that no release references, rows then files;
  // returns their sha256s. Runs on the worker thread; public for tests.
  std::vector<std::string> collect_uploads(clock::time_point now);
  // One step of event retention (see store::repository::prune_events); true when old events
  // may remain. Runs on the worker thread; public for tests.
  bool prune_events(clock::time_point now);

 private:
  struct job {
    protocol::parsed_topic topic;
    std::string payload;
    bool retained = false;
  };
  void run();
  void handle(const job& j);
  // `retained`: the broker replayed a stored message (see submit): refused and recorded.
  void handle_request(const std::string& op, std::string_view payload, bool retained);
  void handle_upload(const std::string& op, const std::string& upload_id, std::string_view payload,
                     bool retained);
  // release.add's signature rules: require_signed, a 64-byte r||s, and the release keys.
  result<void> check_image_sig(const protocol::release_add_args& x);
  result<nlohmann::json> execute(const std::string& op, const protocol::admin_request& r);
  void respond(const std::string& op, const nlohmann::json& id, const result<nlohmann::json>& r);
  // One event of the operator's doing (`command`, `upload`): `data` plus ok, and code and
  // error when `failure` is set.
  void record_operator_event(const std::string& kind, const std::string& op, nlohmann::json data,
                             const error* failure, std::optional<std::int64_t> rollout);
  void record_command(const std::string& op, const nlohmann::json& id, const std::string& cmd,
                      const nlohmann::json& args, const result<nlohmann::json>& r,
                      std::optional<std::int64_t> rollout);

  admin_handler_deps d_;
  admin_settings s_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<job> queue_;
  bool stopping_ = false;
  std::thread thread_;
  // Event retention, touched by the worker thread only: what this round of steps removed,
  // logged (with why the round ended) and reset by end_prune_round().
  std::uint64_t pruned_in_round_ = 0;
  // `fields`: more key=value pairs for the log line, each with a leading space.
  void end_prune_round(std::string_view fields, std::string_view why);
};

}  // namespace otter::service
