#pragma once
// What the service knows of each device, in memory, so a check never waits on PostgreSQL.
// Loaded once at start-up; kept current by the messages this instance handles.
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "protocol/messages.hpp"
#include "protocol/semver.hpp"
#include "rollout/catalog.hpp"
#include "store/repository.hpp"

namespace otter::service {

class device_registry {
 public:
  struct rollback {
    std::int64_t rollout = 0;
    std::string version;  // the version that had succeeded
  };
  struct check_result {
    rollout::device_facts facts;
    bool is_new = false;
    // Successes this check contradicts; they stay successes until rollbacks_recorded(), so a
    // check that could not be recorded (unavailable) finds them again when it is repeated.
    std::vector<rollback> rolled_back;
    // Whether the devices row needs writing: something changed, or last_seen as stored is
    // older than kSeenResolution. A fleet checking in every few seconds would otherwise
    // rewrite the same row each time.
    bool record_device = true;
    // The model, version or attributes differ from what this instance knew (or the device is
    // new here): what instances sharing the device topics tell each other.
    bool changed = false;
  };
  using time_point = std::chrono::system_clock::time_point;
  // How stale the stored last_seen of an unchanged device may get.
  static constexpr std::chrono::seconds kSeenResolution{60};

  void load(const std::vector<store::device_state>& devices);
  // What other instances recorded while this one was not listening to them (shared device
  // topics), read back in three steps: m = mark(); everything submitted so far is written
  // (the writer's flush); the stored states are read; refresh(stored, m). A device this
  // instance changed after the mark keeps its own facts and gains only the links it lacks;
  // every other device takes the stored state, which by then holds this instance's own.
  std::uint64_t mark() const;
  void refresh(const std::vector<store::device_state>& devices, std::uint64_t mark);

  // Records the device's model, version and (when sent) attributes; attributes not sent are
  // taken from what was stored.
  check_result on_check(const std::string& id, const protocol::check_msg& m, time_point now);
  // The check's records were queued, or refused: call once after every on_check().
  void check_done(const std::string& id);
  // The devices row of this check was queued for writing (see record_device).
  void device_recorded(const std::string& id, time_point seen);
  // The rolled_back reports a check derived were queued for writing.
  void rollbacks_recorded(const std::string& id, const std::vector<rollback>& rollbacks);
  void on_offer(const std::string& id, std::int64_t rollout, const std::string& version_text,
                time_point at);
  // The rollout a status without "rollout" belongs to: the latest offer made for that version.
  std::optional<std::int64_t> attribute(const std::string& id,
                                        const protocol::semver& version) const;
  // Whether this device was ever offered that rollout (known for cancelled rollouts too).
  bool was_offered(const std::string& id, std::int64_t rollout) const;
  // The model a device last checked in with; nullopt before its first check.
  std::optional<std::string> model_of(const std::string& id) const;
  // Remembers a report's state for its rollout; `success` also sets the device's version.
  void on_status(const std::string& id, std::optional<std::int64_t> rollout,
                 const protocol::status_msg& m, time_point at);

  // What another instance sharing the device topics learned of a device (NOTIFY
  // otter_devices): this one may get the device's next message. A note older than what this
  // instance knows (a lagging writer's) changes nothing.
  void apply(const store::device_note& n);

  std::size_t size() const;

 private:
  struct link {
    std::int64_t rollout = 0;
    std::string version_text;
    std::optional<protocol::semver> version;
    std::string state;  // offered or a status state
    std::uint64_t offer_seq = 0;
    time_point at{};  // of the state
  };
  struct entry {
    std::string model;
    std::string version_text;
    protocol::attr_map attrs;
    std::vector<link> links;
    time_point recorded_seen{};      // last_seen of the row this instance last queued; 0: none
    bool unrecorded_change = false;  // model, version or attrs changed since that row
    time_point facts_at{};           // when model, version and attrs were last reported
    std::uint64_t touched = 0;       // seq_ of the last change made here (see mark())
    int checks_in_flight = 0;        // on_check() without check_done() yet
  };
  link* find_link(entry& e, std::int64_t rollout);
  entry& fill_locked(const store::device_state& d);  // a new entry from the stored state
  link stored_link_locked(const store::device_state::rollout_entry& r);
  void set_state_locked(entry& e, std::optional<std::int64_t> rollout, const std::string& state,
                        const std::string& version_text,
                        const std::optional<protocol::semver>& version, time_point at);

  mutable std::mutex mu_;
  std::unordered_map<std::string, entry> devices_;
  std::uint64_t seq_ = 0;
};

}  // namespace otter::service
