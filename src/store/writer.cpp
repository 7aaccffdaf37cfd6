#include "store/writer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <unordered_map>
#include <utility>

#include "store/pg_util.hpp"

namespace otter::store {
namespace {

// The transaction's id, read first: when the connection drops during COMMIT, the new
// connection asks whether that transaction committed instead of writing the batch twice.
constexpr const char* kCurrentXact = "SELECT pg_current_xact_id()::text";
constexpr const char* kXactStatus = "SELECT pg_xact_status($1::xid8)";

// Ids from the sequence rather than defaults: the events published after commit carry them.
constexpr const char* kNextEventIds =
    "SELECT nextval('events_id_seq') FROM generate_series(1, $1::integer)";

// Events go in by COPY: the busiest table (two rows per check), and COPY spares PostgreSQL
// parsing the batch as one jsonb document and taking it apart again (bench/, README
// "Performance").
constexpr const char* kEventsTable = "events";
const std::vector<std::string> kEventColumns{"id",    "at",      "kind",     "device",
                                             "actor", "rollout", "instance", "data"};

// $2 is an object whose keys are the ids of the rows that carry attrs: EXCLUDED only has the
// table's columns, so it cannot say whether the incoming row meant to set them.
constexpr const char* kUpsertDevices =
    "INSERT INTO devices AS d (id, model, version, attrs, first_seen, last_seen) "
    "SELECT x.id, x.model, x.version, COALESCE(x.attrs, '{}'::jsonb), x.first_seen, x.last_seen "
    "FROM jsonb_to_recordset($1::jsonb) AS x(id text, model text, version text, attrs jsonb, "
    "  first_seen timestamptz, last_seen timestamptz) "
    "ON CONFLICT (id) DO UPDATE SET "
    "  model = CASE WHEN EXCLUDED.last_seen >= d.last_seen THEN EXCLUDED.model ELSE d.model END, "
    "  version = CASE WHEN EXCLUDED.last_seen >= d.last_seen THEN EXCLUDED.version "
    "                 ELSE d.version END, "
    "  attrs = CASE WHEN $2::jsonb ? EXCLUDED.id THEN EXCLUDED.attrs ELSE d.attrs END, "
    "  first_seen = LEAST(d.first_seen, EXCLUDED.first_seen), "
    "  last_seen = GREATEST(d.last_seen, EXCLUDED.last_seen)";

// ORDER BY n: the bigserial ids (status.list's order) follow the order of submission.
constexpr const char* kInsertStatus =
    "INSERT INTO status_reports (device, rollout, version, state, progress, error, at) "
    "SELECT x.device, x.rollout, x.version, x.state, x.progress, x.error, x.at "
    "FROM jsonb_to_recordset($1::jsonb) AS x(n integer, device text, rollout bigint, "
    "  version text, state text, progress smallint, error text, at timestamptz) "
    "ORDER BY x.n";

// An incoming 'offered' never replaces a status state; a status state replaces an older one
// (by status_at: a report may be written after a newer one).
constexpr const char* kUpsertRolloutDevices =
    "INSERT INTO rollout_devices AS r (rollout, device, state, offered_at, updated_at, "
    "  status_at) "
    "SELECT x.rollout, x.device, x.state, x.offered_at, x.updated_at, x.status_at "
    "FROM jsonb_to_recordset($1::jsonb) AS x(rollout bigint, device text, state text, "
    "  offered_at timestamptz, updated_at timestamptz, status_at timestamptz) "
    "ON CONFLICT (rollout, device) DO UPDATE SET "
    "  state = CASE WHEN EXCLUDED.state = 'offered' THEN r.state "
    "               WHEN r.status_at IS NOT NULL AND EXCLUDED.status_at < r.status_at "
    "                 THEN r.state "
    "               ELSE EXCLUDED.state END, "
    "  status_at = GREATEST(r.status_at, EXCLUDED.status_at), "
    "  offered_at = COALESCE(r.offered_at, EXCLUDED.offered_at), "
    "  updated_at = GREATEST(r.updated_at, EXCLUDED.updated_at)";

// NOTIFY is transactional: other instances hear of the grants only if the batch commits.
constexpr const char* kNotifyGrants = "SELECT pg_notify('otter_grants', $1)";
constexpr const char* kNotifyDevices = "SELECT pg_notify('otter_devices', $1)";

constexpr std::size_t kMaxBatchRecords = 5000;
constexpr std::chrono::milliseconds kLinger{25};  // the most a record waits for company
constexpr std::size_t kLingerRecords = 1000;      // enough company: write at once
constexpr std::chrono::milliseconds kBackoffMin{100};
constexpr std::chrono::milliseconds kBackoffMax{5000};

nlohmann::json opt(const std::optional<std::string>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}
nlohmann::json opt(const std::optional<std::int64_t>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

// One row per device id (ON CONFLICT cannot touch a row twice in one statement), merged in
// submission order and kept in order of first appearance: new devices get their seq (the
// device.list order) in the order they were seen.
struct device_row {
  std::string id;
  std::string model;
  std::string version;
  std::optional<nlohmann::json> attrs;
  time_point first_seen;
  time_point last_seen;
};

struct rollout_device_row {
  std::optional<std::string> status_state;  // the newest status state, if any
  time_point status_at;                     // its report's time
  std::optional<time_point> offered_at;     // the earliest offer, if any
  time_point updated_at;
};

// Parsed and planned once per connection: a batch runs up to seven statements, many times a
// second under load.
void prepare_statements(pqxx::connection& conn) {
  conn.prepare("otter_current_xact", kCurrentXact);
  conn.prepare("otter_next_event_ids", kNextEventIds);
  conn.prepare("otter_upsert_devices", kUpsertDevices);
  conn.prepare("otter_insert_status", kInsertStatus);
  conn.prepare("otter_upsert_rollout_devices", kUpsertRolloutDevices);
  conn.prepare("otter_notify_grants", kNotifyGrants);
  conn.prepare("otter_notify_devices", kNotifyDevices);
}

// Writes batch[0, count) in one transaction and sets the events' ids. xact receives the
// transaction id before anything can fail at commit.
void write_sets(pqxx::connection& conn, std::vector<record_set>& batch, std::size_t count,
                std::string& xact) {
  pqxx::work tx{conn, "otter_writer"};
  xact = tx.exec_prepared1("otter_current_xact")[0].as<std::string>();

  std::size_t n_events = 0;
  for (std::size_t i = 0; i < count; ++i) n_events += batch[i].events.size();
  if (n_events > 0) {
    std::vector<std::int64_t> ids;
    ids.reserve(n_events);
    for (const auto& row :
         tx.exec_prepared("otter_next_event_ids", static_cast<long long>(n_events)))
      ids.push_back(row[0].as<std::int64_t>());
    if (ids.size() != n_events) throw pqxx::internal_error{"nextval returned too few ids"};
    std::sort(ids.begin(), ids.end());  // ascending in submission order
    std::size_t next = 0;
    // data is serialised once, here, and reused for R/events (to_json_text). Nullable columns
    // go as const char*: libpqxx 6.4 writes a null pointer as NULL.
    pqxx::stream_to copy{tx, kEventsTable, kEventColumns};
    for (std::size_t i = 0; i < count; ++i) {
      for (auto& e : batch[i].events) {
        e.id = ids[next++];
        e.data_text = e.data.is_object() ? detail::dump(e.data) : "{}";  // as to_json_text()
        const std::string rollout = e.rollout ? std::to_string(*e.rollout) : std::string{};
        copy << std::make_tuple(
            e.id, to_rfc3339(e.at), e.kind, e.device ? e.device->c_str() : nullptr,
            e.actor ? e.actor->c_str() : nullptr, e.rollout ? rollout.c_str() : nullptr,
            e.instance.empty() ? nullptr : e.instance.c_str(), e.data_text);
      }
    }
    copy.complete();
  }

  std::vector<device_row> devices;
  std::unordered_map<std::string, std::size_t> device_index;
  std::vector<const status_record*> statuses;
  std::map<std::pair<std::int64_t, std::string>, rollout_device_row> rollout_devices;
  for (std::size_t i = 0; i < count; ++i) {
    for (const auto& d : batch[i].devices) {
      const auto [it, fresh] = device_index.try_emplace(d.id, devices.size());
      if (fresh)
        devices.push_back(device_row{d.id, d.model, d.version, std::nullopt, d.seen, d.seen});
      auto& row = devices[it->second];
      if (!fresh) {
        row.first_seen = std::min(row.first_seen, d.seen);
        if (d.seen >= row.last_seen) {
          row.last_seen = d.seen;
          row.model = d.model;
          row.version = d.version;
        }
      }
      if (d.has_attrs) row.attrs = d.attrs;
    }
    for (const auto& s : batch[i].statuses) statuses.push_back(&s);
    for (const auto& r : batch[i].rollout_devices) {
      auto [it, fresh] = rollout_devices.try_emplace({r.rollout, r.device});
      auto& row = it->second;
      if (fresh) row.updated_at = r.at;
      row.updated_at = std::max(row.updated_at, r.at);
      if (r.state == "offered") {
        if (!row.offered_at) row.offered_at = r.at;
      } else if (!row.status_state || r.at >= row.status_at) {
        row.status_state = r.state;
        row.status_at = r.at;
      }
    }
  }

  if (!devices.empty()) {
    nlohmann::json rows = nlohmann::json::array();
    nlohmann::json with_attrs = nlohmann::json::object();
    for (const auto& d : devices) {
      rows.push_back({{"id", d.id},
                      {"model", d.model},
                      {"version", d.version},
                      {"attrs", d.attrs ? *d.attrs : nlohmann::json(nullptr)},
                      {"first_seen", to_rfc3339(d.first_seen)},
                      {"last_seen", to_rfc3339(d.last_seen)}});
      if (d.attrs) with_attrs[d.id] = true;
    }
    tx.exec_prepared0("otter_upsert_devices", detail::dump(rows), detail::dump(with_attrs));
  }

  if (!statuses.empty()) {
    nlohmann::json rows = nlohmann::json::array();
    int n = 0;
    for (const auto* s : statuses) {
      rows.push_back({{"n", n++},
                      {"device", s->device},
                      {"rollout", opt(s->rollout)},
                      {"version", s->version},
                      {"state", s->state},
                      {"progress", s->progress ? nlohmann::json(*s->progress) : nullptr},
                      {"error", opt(s->error)},
                      {"at", to_rfc3339(s->at)}});
    }
    tx.exec_prepared0("otter_insert_status", detail::dump(rows));
  }

  if (!rollout_devices.empty()) {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& [key, r] : rollout_devices) {
      rows.push_back(
          {{"rollout", key.first},
           {"device", key.second},
           {"state", r.status_state.value_or("offered")},
           {"offered_at", r.offered_at ? nlohmann::json(to_rfc3339(*r.offered_at)) : nullptr},
           {"updated_at", to_rfc3339(r.updated_at)},
           {"status_at", r.status_state ? nlohmann::json(to_rfc3339(r.status_at)) : nullptr}});
    }
    tx.exec_prepared0("otter_upsert_rollout_devices", detail::dump(rows));
  }

  std::vector<const grant_record*> grants;
  for (std::size_t i = 0; i < count; ++i)
    for (const auto& g : batch[i].grants) grants.push_back(&g);
  for (const auto& payload : grant_notifications(grants))
    tx.exec_prepared("otter_notify_grants", payload);
  std::vector<const device_note*> notes;
  for (std::size_t i = 0; i < count; ++i)
    for (const auto& n : batch[i].notes) notes.push_back(&n);
  for (const auto& payload : device_notifications(notes))
    tx.exec_prepared("otter_notify_devices", payload);

  tx.commit();
}

}  // namespace

writer::writer(std::string db_url, std::size_t queue_limit, recorded_handler on_recorded)
    : db_url_(std::move(db_url)), limit_(queue_limit), on_recorded_(std::move(on_recorded)) {}

writer::~writer() {
  stop();
}

void writer::start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { run(); });
}

bool writer::submit(record_set&& set) {
  const std::size_t n = set.size();
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    if (stopping_ || queued_records_ + n > limit_) {
      ++stats_.rejected;
      return false;
    }
    if (n == 0) return true;  // nothing to write; flush() need not wait for it
    queue_.push_back(std::move(set));
    queued_records_ += n;
    ++submitted_seq_;
    // Wake the writer for the first set (it may be idle) and when its linger can end; not
    // for every set in between (a context switch each).
    wake = queue_.size() == 1 ||
           (queued_records_ >= kLingerRecords && queued_records_ - n < kLingerRecords);
  }
  if (wake) cv_.notify_one();
  return true;
}

std::size_t writer::stop(std::chrono::milliseconds deadline) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      stopping_ = true;
      stop_deadline_ = std::chrono::steady_clock::now() + deadline;
    }
  }
  cv_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  std::lock_guard lock(mu_);
  return queued_records_;
}

bool writer::flush(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  const auto target = submitted_seq_;
  return flushed_cv_.wait_for(lock, timeout, [&] { return committed_seq_ >= target; });
}

writer_stats writer::stats() const {
  std::lock_guard lock(mu_);
  writer_stats s = stats_;
  s.queued = queued_records_;
  return s;
}

bool writer::past_deadline_locked() const {
  return stopping_ && std::chrono::steady_clock::now() >= stop_deadline_;
}

void writer::set_connected(bool up) {
  std::lock_guard lock(mu_);
  stats_.connected = up;
}

bool writer::pause(std::chrono::milliseconds d, bool holding) {
  const auto wake = std::chrono::steady_clock::now() + d;
  std::unique_lock lock(mu_);
  for (;;) {
    // Stopping with nothing to write: no reason to wait for the database at all.
    if (past_deadline_locked() || (stopping_ && !holding && queue_.empty())) return false;
    const auto until = stopping_ ? std::min(wake, stop_deadline_) : wake;
    if (std::chrono::steady_clock::now() >= until) return !past_deadline_locked();
    cv_.wait_until(lock, until);  // submit() and stop() wake it too
  }
}

void writer::complete(std::vector<record_set>& batch, std::size_t sets, bool refused) {
  std::size_t records = 0;
  std::vector<event_record> events;
  for (std::size_t i = 0; i < sets; ++i) {
    records += batch[i].size();
    if (!refused)
      std::move(batch[i].events.begin(), batch[i].events.end(), std::back_inserter(events));
  }
  batch.erase(batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(sets));
  // Before flush() is woken: whoever flushed may count on the events having been published.
  if (!events.empty() && on_recorded_) {
    try {
      on_recorded_(events);
    } catch (const std::exception& e) {
      spdlog::warn("store: writer: on_recorded failed: {}", e.what());
    }
  }
  {
    std::lock_guard lock(mu_);
    queued_records_ -= records;
    committed_seq_ += sets;
    if (refused) {
      stats_.dropped += records;
    } else {
      stats_.written += records;
      ++stats_.batches;
    }
  }
  flushed_cv_.notify_all();
}

void writer::run() {
  std::unique_ptr<detail::session> db;
  std::vector<record_set> batch;  // taken from the queue, still counted in queued_records_
  bool one_by_one = false;        // the batch hit a data error: one set per transaction
  std::optional<std::string> doubtful_xact;  // COMMIT sent, answer lost
  std::size_t doubtful_sets = 0;
  auto backoff = kBackoffMin;
  bool lost = false;  // for the log: a connection failed since the last success

  for (;;) {
    std::string xact;
    try {
      if (!db) {
        db = std::make_unique<detail::session>(db_url_);
        prepare_statements(db->conn);
        set_connected(true);
        if (lost) spdlog::info("store: writer reconnected to PostgreSQL");
        lost = false;
      }
      if (batch.empty()) {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
        if (queue_.empty()) break;  // stopping, everything written
        // A moment for more to arrive: under load, one transaction per handful of records
        // cost PostgreSQL (on the same cores) more than the records themselves.
        cv_.wait_for(lock, kLinger, [&] { return queued_records_ >= kLingerRecords || stopping_; });
        std::size_t records = 0;
        while (!queue_.empty() &&
               (batch.empty() || records + queue_.front().size() <= kMaxBatchRecords)) {
          records += queue_.front().size();
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        one_by_one = false;
      }
      {
        std::lock_guard lock(mu_);
        if (past_deadline_locked()) break;
      }

      if (doubtful_xact) {
        pqxx::work tx{db->conn, "otter_writer_check"};
        const auto status = detail::opt_string(tx.exec_params(kXactStatus, *doubtful_xact)[0][0]);
        tx.commit();
        if (status && *status == "in progress") {
          // The old backend has not finished its COMMIT yet: ask again shortly.
          if (!pause(kBackoffMin, true)) break;
          continue;
        }
        const auto sets = doubtful_sets;
        doubtful_xact.reset();
        spdlog::info("store: writer: the transaction whose COMMIT was lost {}",
                     status && *status == "committed" ? "committed" : "did not commit; rewriting");
        if (status && *status == "committed") {
          complete(batch, sets, false);
          continue;
        }
        // aborted (or forgotten): write it again
      }

      if (!one_by_one) {
        write_sets(db->conn, batch, batch.size(), xact);
        complete(batch, batch.size(), false);
      } else {
        while (!batch.empty()) {
          try {
            write_sets(db->conn, batch, 1, xact);
            complete(batch, 1, false);
          } catch (const pqxx::sql_error& e) {
            if (!detail::is_data_error(e)) throw;
            spdlog::warn(
                "store: writer: PostgreSQL refused a record set of {} records; dropped: {}",
                batch.front().size(), detail::first_line(e.what()));
            complete(batch, 1, true);
          }
        }
      }
      backoff = kBackoffMin;
      continue;
    } catch (const pqxx::in_doubt_error&) {
      doubtful_xact = xact;
      doubtful_sets = one_by_one ? 1 : batch.size();
      spdlog::warn("store: writer: connection lost during COMMIT; will check its outcome");
      db.reset();
    } catch (const pqxx::sql_error& e) {
      if (detail::is_data_error(e) && !one_by_one && !batch.empty()) {
        spdlog::warn("store: writer: batch of {} sets refused ({}); writing them one by one",
                     batch.size(), detail::first_line(e.what()));
        one_by_one = true;
        continue;
      }
      spdlog::warn("store: writer: {}", detail::first_line(e.what()));
      if (db && !db->conn.is_open()) db.reset();
    } catch (const pqxx::broken_connection& e) {
      spdlog::warn("store: writer: PostgreSQL unavailable: {}", detail::first_line(e.what()));
      db.reset();
    } catch (const std::exception& e) {
      spdlog::warn("store: writer: {}", detail::first_line(e.what()));
      if (db && !db->conn.is_open()) db.reset();
    }
    if (!db) {
      set_connected(false);
      lost = true;
    }
    if (!pause(backoff, !batch.empty())) break;
    backoff = std::min(backoff * 2, kBackoffMax);
  }
  db.reset();
  std::lock_guard lock(mu_);
  stats_.connected = false;
  if (queued_records_ > 0)
    spdlog::warn("store: writer stopped with {} records unwritten", queued_records_);
}

}  // namespace otter::store
