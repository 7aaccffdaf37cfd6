#pragma once
// Synchronous PostgreSQL access for operator commands and start-up loads. Never used on the
// device hot path. SQL lives as named constants in repository.cpp.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "protocol/commands.hpp"
#include "protocol/error.hpp"
#include "rollout/catalog.hpp"
#include "store/records.hpp"

namespace pqxx {
// libpqxx 6.x: connection is an alias of a template, so a plain `class connection;` would clash
// with <pqxx/connection>; declare it the way libpqxx does.
class connect_direct;
template <typename CONNECTPOLICY>
class basic_connection_base;
using connection = basic_connection_base<connect_direct>;
}  // namespace pqxx

namespace otter::store {

namespace detail {
struct session;  // store/pg_util.hpp
}

// An update offer as the chunk server needs it.
struct recent_offer {
  std::string device;
  std::string sha256;
  std::uint64_t size = 0;
  std::int64_t rollout = 0;
  std::chrono::system_clock::time_point at{};
};

// A device as the service keeps it in memory.
struct device_state {
  std::string id;
  std::string model;
  std::string version;
  nlohmann::json attrs = nlohmann::json::object();
  std::chrono::system_clock::time_point seen{};  // last_seen: the facts are at least as old
  struct rollout_entry {
    std::int64_t rollout = 0;
    std::string version;                         // the rollout's release version text
    std::string state;                           // offered or a status state
    std::chrono::system_clock::time_point at{};  // of the state (its report, else the row)
  };
  std::vector<rollout_entry> rollouts;
};

struct page {
  nlohmann::json items = nlohmann::json::array();
  std::optional<std::string> next;  // cursor for the next page
  nlohmann::json to_json() const;   // {"items": [...], "next": "…" | null}
};

// Wire shapes (PROTOCOL.md): release {model, version, sha256, size, min_version, notes, signed,
// created_at}; rollout {id (string), name, model, version, target, state, allow_downgrade,
// created_by, created_at} (+ reason, updated_at); device {id, model, version, attrs, first_seen,
// last_seen}; status report {device, rollout, version, state, progress, error, at};
// event {id, at, kind, device, actor, rollout, data}. Absent optionals are JSON null.
class repository {
 public:
  explicit repository(std::string db_url);
  ~repository();

  // Connects (if needed) and applies migrations. Throws on failure.
  void open();

  // Errors: unavailable (PostgreSQL unreachable; the connection is retried next call),
  // not_found, conflict, bad_request, internal.
  //
  // Uploads, release.add and the uploads' garbage collection hold a lock per image across
  // instances (a transaction-scoped advisory lock on the sha256): instances sharing one data
  // folder never interleave storing an image, naming it in a release and deleting it.
  //
  // Idempotent: {sha256, size}. `ensure_file` runs under the lock, before the commit: it
  // makes sure the image file is there (a collection may have removed it just before).
  using file_step = std::function<result<void>(const std::string& sha256)>;
  result<nlohmann::json> add_upload(const std::string& sha256, std::uint64_t size,
                                    const std::string& actor, const file_step& ensure_file = {});
  result<bool> upload_exists(const std::string& sha256, std::uint64_t* size_out);
  // Upload garbage collection: deletes the uploads created before `cutoff` that no release
  // references, one by one, each under its lock with `remove_file` before the commit (a
  // failure keeps the row), and returns their sha256s.
  result<std::vector<std::string>> delete_unreferenced_uploads(
      std::chrono::system_clock::time_point cutoff, const file_step& remove_file = {});
  // Event retention: one step deleting up to `batch` events recorded before `cutoff`, oldest
  // first, except the audit trail: successful uploads, and successful commands named in
  // `kept_commands`. `more`: the step was full, so another may find more. `skipped`: another
  // instance holds the pruning lock for its own step. Rows are found by their time (the
  // events_at index), so late batches and clocks running ahead hold nothing up.
  struct prune_step {
    std::uint64_t removed = 0;
    bool more = false;
    bool skipped = false;
  };
  result<prune_step> prune_events(std::chrono::system_clock::time_point cutoff, std::size_t batch,
                                  const std::vector<std::string>& kept_commands);
  // conflict if (model, canonical version) exists; not_found if the upload is unknown.
  // `check_file` (optional) runs under the image's lock: the image file must be there.
  result<nlohmann::json> add_release(const protocol::release_add_args& a, std::uint64_t size,
                                     const std::string& actor, const file_step& check_file = {});
  result<nlohmann::json> get_release(const std::string& model, const protocol::semver& version);
  result<page> list_releases(const protocol::release_list_args& a);

  // not_found if the release does not exist.
  result<nlohmann::json> create_rollout(const protocol::rollout_create_args& a,
                                        const std::string& actor);
  result<nlohmann::json> get_rollout(std::int64_t id, bool with_counts);
  result<page> list_rollouts(const protocol::rollout_list_args& a);
  // Widen a percent rollout: bad_request if not percent or lower than now; conflict if
  // cancelled.
  result<nlohmann::json> update_rollout_percent(std::int64_t id, std::uint32_t basis_points,
                                                const std::string& actor);
  // new_state paused/active/cancelled: conflict from cancelled; idempotent otherwise.
  result<nlohmann::json> set_rollout_state(std::int64_t id, protocol::rollout_state new_state,
                                           const std::optional<std::string>& reason,
                                           const std::string& actor);

  result<page> list_devices(const protocol::device_list_args& a);
  result<nlohmann::json> get_device(const std::string& id);
  result<page> list_status(const protocol::status_list_args& a);
  result<page> list_events(const protocol::events_list_args& a);

  // Start-up and refresh loads.
  rollout::catalog load_catalog();  // throws on failure
  std::vector<device_state> load_devices();
  // The update offers made since `since`, newest per device and image: the chunk grants a
  // restarted service restores, so that downloads in progress survive a restart.
  std::vector<recent_offer> load_recent_offers(std::chrono::system_clock::time_point since);

 private:
  template <class F>
  auto with_connection(F&& f) -> decltype(f(std::declval<pqxx::connection&>()));
  std::string db_url_;
  std::mutex mu_;
  std::unique_ptr<detail::session> session_;  // the connection; reset when it breaks
};

}  // namespace otter::store
