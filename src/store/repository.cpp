#include "store/repository.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <pqxx/pqxx>
#include <stdexcept>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "store/migrations.hpp"
#include "store/pg_util.hpp"

namespace otter::store {
namespace {

// Timestamps leave PostgreSQL as epoch milliseconds ("..._ms" columns) and are formatted by
// to_rfc3339(), so every time on the wire has one format whatever the session's DateStyle and
// TimeZone. Optional filters are "$n IS NULL OR col = $n": one statement per query.

// ---- uploads
// Uploading the same image again restarts its garbage-collection clock.
constexpr const char* kInsertUpload =
    "INSERT INTO uploads (sha256, size, uploaded_by) VALUES ($1, $2, $3) "
    "ON CONFLICT (sha256) DO UPDATE SET created_at = now()";
constexpr const char* kUploadSize = "SELECT size FROM uploads WHERE sha256 = $1";
// Candidates; each is checked again under its image's lock (kDeleteUnreferencedUpload).
constexpr const char* kUnreferencedUploads =
    "SELECT u.sha256 FROM uploads u "
    "WHERE u.created_at < to_timestamp($1::bigint / 1000.0) "
    "  AND NOT EXISTS (SELECT 1 FROM releases r WHERE r.sha256 = u.sha256)";
// Checked again under the image's lock: it may have been uploaded again, or a release added
// (release.add takes the lock too), meanwhile.
constexpr const char* kDeleteUnreferencedUpload =
    "DELETE FROM uploads u "
    "WHERE u.sha256 = $1 AND u.created_at < to_timestamp($2::bigint / 1000.0) "
    "  AND NOT EXISTS (SELECT 1 FROM releases r WHERE r.sha256 = u.sha256) "
    "RETURNING u.sha256";
// Event retention (prune_events): one instance at a time runs a step; the others skip theirs.
constexpr const char* kTryLockPrune =
    "SELECT pg_try_advisory_xact_lock(hashtextextended('otter-prune-events', 0))";
// Up to $2 events recorded before $1, oldest first by the events_at index, except the audit
// trail: successful uploads, and successful commands among $3 (those that change something;
// reads such as a dashboard's metrics.get every few seconds would otherwise grow the table
// forever). A row without "ok" or "cmd" is not kept (coalesce: NULL would be neither).
constexpr const char* kPruneStep =
    "DELETE FROM events WHERE id IN ("
    "  SELECT id FROM events WHERE at < to_timestamp($1::bigint / 1000.0) "
    "    AND NOT coalesce(kind IN ('command', 'upload') AND data->>'ok' = 'true' "
    "                     AND (kind = 'upload' OR data->>'cmd' = ANY($3::text[])), false) "
    "  ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED)";
// One lock per image, across instances, until the transaction ends.
constexpr const char* kLockImage = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";
void lock_image(pqxx::work& tx, const std::string& sha256) {
  tx.exec_params(kLockImage, "otter-image:" + sha256);
}

// ---- releases
// The size comes from the upload, the one place that measured the image.
constexpr const char* kInsertRelease =
    "INSERT INTO releases (model, version, version_key, sha256, size, min_version, notes, "
    "  image_sig, created_by) "
    "SELECT $1::text, $2::text, $3::text, u.sha256, u.size, $5::text, $6::text, $7::text, "
    "  $8::text "
    "FROM uploads u WHERE u.sha256 = $4 "
    "ON CONFLICT (model, version_key) DO NOTHING "
    "RETURNING id, model, version, sha256, size, min_version, notes, image_sig, "
    "  floor(extract(epoch FROM created_at) * 1000)::bigint AS created_ms";
constexpr const char* kExistingReleaseVersion =
    "SELECT version FROM releases WHERE model = $1 AND version_key = $2";
constexpr const char* kUploadExists = "SELECT EXISTS (SELECT 1 FROM uploads WHERE sha256 = $1)";
constexpr const char* kGetRelease =
    "SELECT id, model, version, sha256, size, min_version, notes, image_sig, "
    "  floor(extract(epoch FROM created_at) * 1000)::bigint AS created_ms "
    "FROM releases WHERE model = $1 AND version_key = $2";
constexpr const char* kListReleases =
    "SELECT id, model, version, sha256, size, min_version, notes, image_sig, "
    "  floor(extract(epoch FROM created_at) * 1000)::bigint AS created_ms "
    "FROM releases "
    "WHERE ($1::text IS NULL OR model = $1) AND ($2::bigint IS NULL OR id < $2) "
    "ORDER BY id DESC LIMIT $3";

// ---- rollouts
constexpr const char* kCreateRollout =
    "INSERT INTO rollouts (name, release_id, target, allow_downgrade, created_by) "
    "SELECT $1::text, rel.id, $4::jsonb, $5::boolean, $6::text "
    "FROM releases rel WHERE rel.model = $2 AND rel.version_key = $3 "
    "RETURNING id";
constexpr const char* kGetRollout =
    "SELECT r.id, r.name, rel.model, rel.version, r.target::text AS target, r.state, "
    "  r.allow_downgrade, r.reason, r.created_by, "
    "  floor(extract(epoch FROM r.created_at) * 1000)::bigint AS created_ms, "
    "  floor(extract(epoch FROM r.updated_at) * 1000)::bigint AS updated_ms "
    "FROM rollouts r JOIN releases rel ON rel.id = r.release_id "
    "WHERE r.id = $1";
constexpr const char* kListRollouts =
    "SELECT r.id, r.name, rel.model, rel.version, r.target::text AS target, r.state, "
    "  r.allow_downgrade, r.reason, r.created_by, "
    "  floor(extract(epoch FROM r.created_at) * 1000)::bigint AS created_ms, "
    "  floor(extract(epoch FROM r.updated_at) * 1000)::bigint AS updated_ms "
    "FROM rollouts r JOIN releases rel ON rel.id = r.release_id "
    "WHERE ($1::text IS NULL OR r.state = $1) AND ($2::text IS NULL OR rel.model = $2) "
    "  AND ($3::bigint IS NULL OR r.id < $3) "
    "ORDER BY r.id DESC LIMIT $4";
// "offered" counts every device ever offered; the others where each device stands now.
constexpr const char* kRolloutCounts =
    "SELECT count(*) FILTER (WHERE offered_at IS NOT NULL), "
    "  count(*) FILTER (WHERE state = 'downloading'), "
    "  count(*) FILTER (WHERE state = 'verifying'), "
    "  count(*) FILTER (WHERE state = 'installing'), "
    "  count(*) FILTER (WHERE state = 'success'), "
    "  count(*) FILTER (WHERE state = 'failed'), "
    "  count(*) FILTER (WHERE state = 'rejected'), "
    "  count(*) FILTER (WHERE state = 'rolled_back') "
    "FROM rollout_devices WHERE rollout = $1";
constexpr const char* kCountKeys[] = {"offered", "downloading", "verifying", "installing",
                                      "success", "failed",      "rejected",  "rolled_back"};
// FOR UPDATE: two operators changing one rollout at once are serialised, not interleaved.
constexpr const char* kLockRollout =
    "SELECT target::text, state FROM rollouts WHERE id = $1 FOR UPDATE";
constexpr const char* kSetRolloutTarget =
    "UPDATE rollouts SET target = $2::jsonb, updated_at = now() WHERE id = $1";
constexpr const char* kSetRolloutState =
    "UPDATE rollouts SET state = $2, reason = $3, updated_at = now() WHERE id = $1";

// ---- devices, status reports, events
constexpr const char* kGetDevice =
    "SELECT seq, id, model, version, attrs::text AS attrs, "
    "  floor(extract(epoch FROM first_seen) * 1000)::bigint AS first_seen_ms, "
    "  floor(extract(epoch FROM last_seen) * 1000)::bigint AS last_seen_ms "
    "FROM devices WHERE id = $1";
constexpr const char* kListDevices =
    "SELECT seq, id, model, version, attrs::text AS attrs, "
    "  floor(extract(epoch FROM first_seen) * 1000)::bigint AS first_seen_ms, "
    "  floor(extract(epoch FROM last_seen) * 1000)::bigint AS last_seen_ms "
    "FROM devices "
    "WHERE ($1::text IS NULL OR model = $1) "
    "  AND ($2::text IS NULL OR split_part(version, '+', 1) = $2) "
    "  AND ($3::bigint IS NULL OR seq > $3) "
    "ORDER BY seq LIMIT $4";
constexpr const char* kListStatus =
    "SELECT id, device, rollout, version, state, progress, error, "
    "  floor(extract(epoch FROM at) * 1000)::bigint AS at_ms "
    "FROM status_reports "
    "WHERE ($1::text IS NULL OR device = $1) AND ($2::bigint IS NULL OR rollout = $2) "
    "  AND ($3::text IS NULL OR state = $3) AND ($4::bigint IS NULL OR id < $4) "
    "ORDER BY id DESC LIMIT $5";
constexpr const char* kListEvents =
    "SELECT id, floor(extract(epoch FROM at) * 1000)::bigint AS at_ms, kind, device, actor, "
    "  rollout, data::text AS data "
    "FROM events "
    "WHERE ($1::text IS NULL OR device = $1) AND ($2::text IS NULL OR kind = $2) "
    "  AND ($3::bigint IS NULL OR at >= to_timestamp($3)) AND ($4::bigint IS NULL OR id < $4) "
    "ORDER BY id DESC LIMIT $5";

// ---- start-up loads
constexpr const char* kCatalogReleases =
    "SELECT id, model, version, min_version, sha256, size, image_sig FROM releases ORDER BY id";
constexpr const char* kCatalogRollouts =
    "SELECT id, name, release_id, target::text, state, allow_downgrade FROM rollouts "
    "WHERE state <> 'cancelled' ORDER BY id";
constexpr const char* kAllDevices =
    "SELECT id, model, version, attrs::text, floor(extract(epoch FROM last_seen) * 1000)::bigint "
    "FROM devices ORDER BY seq";
constexpr const char* kAllRolloutDevices =
    "SELECT rd.device, rd.rollout, rel.version, rd.state, "
    "  floor(extract(epoch FROM COALESCE(rd.status_at, rd.updated_at)) * 1000)::bigint "
    "FROM rollout_devices rd "
    "JOIN rollouts r ON r.id = rd.rollout JOIN releases rel ON rel.id = r.release_id "
    "ORDER BY rd.device, rd.rollout";

// Offer events carry the rollout only for update offers; the rollout names the release.
constexpr const char* kRecentOffers =
    "SELECT DISTINCT ON (e.device, rel.sha256) e.device, rel.sha256, rel.size, e.rollout, "
    "       (extract(epoch FROM e.at) * 1000)::bigint "
    "FROM events e JOIN rollouts r ON r.id = e.rollout JOIN releases rel ON rel.id = r.release_id "
    "WHERE e.at >= to_timestamp($1::bigint / 1000.0) AND e.kind = 'offer' "
    "  AND e.device IS NOT NULL "
    "ORDER BY e.device, rel.sha256, e.at DESC";

template <class T>
struct is_result : std::false_type {};
template <class T>
struct is_result<result<T>> : std::true_type {};

int clamp_limit(int limit) {
  return std::clamp(limit, 1, protocol::kMaxPageLimit);
}

// The query fetched limit + 1 rows: the extra one only says that a next page exists.
template <class ToJson>
page make_page(const pqxx::result& rows, int limit, const char* cursor_column, ToJson to_json) {
  page p;
  using size_type = pqxx::result::size_type;
  const auto n = std::min<size_type>(rows.size(), static_cast<size_type>(limit));
  for (size_type i = 0; i < n; ++i) p.items.push_back(to_json(rows[i]));
  if (rows.size() > n && n > 0) p.next = rows[n - 1][cursor_column].as<std::string>();
  return p;
}

std::string percent_text(std::uint32_t basis_points) {
  std::string s = std::to_string(basis_points / 100);
  if (const auto frac = basis_points % 100; frac != 0) {
    char buf[8];
    std::snprintf(buf, sizeof buf, ".%02u", frac);
    s += buf;
    if (s.back() == '0') s.pop_back();
  }
  return s;
}

nlohmann::json release_json(const pqxx::row& r) {
  nlohmann::json j = nlohmann::json::object();
  j["model"] = r["model"].as<std::string>();
  j["version"] = r["version"].as<std::string>();
  j["sha256"] = r["sha256"].as<std::string>();
  j["size"] = r["size"].as<std::int64_t>();
  j["min_version"] = detail::string_or_null(r["min_version"]);
  j["notes"] = detail::string_or_null(r["notes"]);
  j["signed"] = !r["image_sig"].is_null();
  j["image_sig"] = detail::string_or_null(r["image_sig"]);
  j["created_at"] = detail::time_or_null(r["created_ms"]);
  return j;
}

nlohmann::json rollout_json(const pqxx::row& r) {
  nlohmann::json j = nlohmann::json::object();
  j["id"] = r["id"].as<std::string>();
  j["name"] = r["name"].as<std::string>();
  j["model"] = r["model"].as<std::string>();
  j["version"] = r["version"].as<std::string>();
  j["target"] = detail::parse_json(r["target"]);
  j["state"] = r["state"].as<std::string>();
  j["allow_downgrade"] = r["allow_downgrade"].as<bool>();
  j["reason"] = detail::string_or_null(r["reason"]);
  j["created_by"] = r["created_by"].as<std::string>();
  j["created_at"] = detail::time_or_null(r["created_ms"]);
  j["updated_at"] = detail::time_or_null(r["updated_ms"]);
  return j;
}

nlohmann::json device_json(const pqxx::row& r) {
  nlohmann::json j = nlohmann::json::object();
  j["id"] = r["id"].as<std::string>();
  j["model"] = r["model"].as<std::string>();
  j["version"] = r["version"].as<std::string>();
  j["attrs"] = detail::parse_json(r["attrs"]);
  j["first_seen"] = detail::time_or_null(r["first_seen_ms"]);
  j["last_seen"] = detail::time_or_null(r["last_seen_ms"]);
  return j;
}

nlohmann::json status_json(const pqxx::row& r) {
  nlohmann::json j = nlohmann::json::object();
  j["device"] = r["device"].as<std::string>();
  j["rollout"] = detail::string_or_null(r["rollout"]);  // ids are strings on the wire
  j["version"] = r["version"].as<std::string>();
  j["state"] = r["state"].as<std::string>();
  j["progress"] =
      r["progress"].is_null() ? nlohmann::json(nullptr) : nlohmann::json(r["progress"].as<int>());
  j["error"] = detail::string_or_null(r["error"]);
  j["at"] = detail::time_or_null(r["at_ms"]);
  return j;
}

nlohmann::json event_json(const pqxx::row& r) {
  event_record e;
  e.id = r["id"].as<std::int64_t>();
  e.at = detail::from_epoch_ms(r["at_ms"].as<std::int64_t>());
  e.kind = r["kind"].as<std::string>();
  e.device = detail::opt_string(r["device"]);
  e.actor = detail::opt_string(r["actor"]);
  e.rollout = detail::opt_int64(r["rollout"]);
  e.data = detail::parse_json(r["data"]);
  return e.to_json();
}

std::optional<nlohmann::json> fetch_rollout(pqxx::transaction_base& tx, std::int64_t id,
                                            bool with_counts) {
  const auto rows = tx.exec_params(kGetRollout, id);
  if (rows.empty()) return std::nullopt;
  auto j = rollout_json(rows[0]);
  if (with_counts) {
    const auto c = tx.exec_params(kRolloutCounts, id);
    nlohmann::json counts = nlohmann::json::object();
    for (int i = 0; i < static_cast<int>(std::size(kCountKeys)); ++i)
      counts[kCountKeys[i]] = c[0][i].as<std::int64_t>();
    j["counts"] = std::move(counts);
  }
  return j;
}

error rollout_not_found(std::int64_t id) {
  return make_error(errc::not_found, "rollout " + std::to_string(id) + " not found");
}

}  // namespace

nlohmann::json page::to_json() const {
  return {{"items", items}, {"next", next ? nlohmann::json(*next) : nlohmann::json(nullptr)}};
}

repository::repository(std::string db_url) : db_url_(std::move(db_url)) {}

repository::~repository() = default;

template <class F>
auto repository::with_connection(F&& f) -> decltype(f(std::declval<pqxx::connection&>())) {
  using R = decltype(f(std::declval<pqxx::connection&>()));
  std::lock_guard lock(mu_);
  try {
    if (!session_) session_ = std::make_unique<detail::session>(db_url_);
    return f(session_->conn);
  } catch (const pqxx::broken_connection& e) {
    // Dropped here; the next call connects afresh (libpqxx would otherwise reactivate the
    // old connection behind our back).
    session_.reset();
    spdlog::warn("store: PostgreSQL unavailable: {}", detail::first_line(e.what()));
    if constexpr (is_result<R>::value)
      return make_error(errc::unavailable, "database unavailable: " + detail::first_line(e.what()));
    else
      throw;
  } catch (const pqxx::in_doubt_error& e) {
    session_.reset();
    spdlog::warn("store: connection lost during COMMIT: {}", detail::first_line(e.what()));
    if constexpr (is_result<R>::value)
      return make_error(errc::unavailable,
                        "database unavailable: connection lost while committing; the change "
                        "may or may not have been applied");
    else
      throw;
  } catch (const std::exception& e) {
    // The details (constraint names, values) go to the log, never into a response.
    spdlog::warn("store: database error: {}", e.what());
    const bool lost = session_ && !session_->conn.is_open();
    if (lost) session_.reset();
    if constexpr (is_result<R>::value) {
      if (lost) return make_error(errc::unavailable, "database unavailable: connection lost");
      return make_error(errc::internal, "database error");
    } else {
      throw;
    }
  }
}

void repository::open() {
  std::lock_guard lock(mu_);
  try {
    if (!session_) session_ = std::make_unique<detail::session>(db_url_);
    const auto applied = migrate(session_->conn);
    for (const auto& name : applied) spdlog::info("store: migration {} applied", name);
  } catch (...) {
    if (session_ && !session_->conn.is_open()) session_.reset();
    throw;
  }
}

result<nlohmann::json> repository::add_upload(const std::string& sha256, std::uint64_t size,
                                              const std::string& actor,
                                              const file_step& ensure_file) {
  return with_connection([&](pqxx::connection& c) -> result<nlohmann::json> {
    pqxx::work tx{c};
    lock_image(tx, sha256);
    tx.exec_params0(kInsertUpload, sha256, static_cast<std::int64_t>(size), actor);
    const auto stored = tx.exec_params1(kUploadSize, sha256)[0].as<std::int64_t>();
    if (ensure_file)
      if (auto r = ensure_file(sha256); !r) return r.error();  // rolled back
    tx.commit();
    return nlohmann::json{{"sha256", sha256}, {"size", stored}};
  });
}

result<bool> repository::upload_exists(const std::string& sha256, std::uint64_t* size_out) {
  return with_connection([&](pqxx::connection& c) -> result<bool> {
    pqxx::read_transaction tx{c};
    const auto rows = tx.exec_params(kUploadSize, sha256);
    if (rows.empty()) return false;
    if (size_out) *size_out = static_cast<std::uint64_t>(rows[0][0].as<std::int64_t>());
    return true;
  });
}

result<std::vector<std::string>> repository::delete_unreferenced_uploads(
    std::chrono::system_clock::time_point cutoff, const file_step& remove_file) {
  const auto cutoff_ms = detail::epoch_ms(cutoff);
  return with_connection([&](pqxx::connection& c) -> result<std::vector<std::string>> {
    std::vector<std::string> candidates;
    {
      pqxx::read_transaction tx{c};
      for (const auto& r : tx.exec_params(kUnreferencedUploads, cutoff_ms))
        candidates.push_back(r[0].as<std::string>());
    }
    std::vector<std::string> out;
    for (const auto& sha : candidates) {
      try {
        pqxx::work tx{c};
        lock_image(tx, sha);
        if (tx.exec_params(kDeleteUnreferencedUpload, sha, cutoff_ms).empty()) continue;
        if (remove_file) {
          if (auto r = remove_file(sha); !r) {
            spdlog::warn("decision=upload_gc_file_kept sha256={} reason=\"{}\"", sha,
                         r.error().message);
            continue;  // rolled back: the row stays with its file
          }
        }
        tx.commit();
        out.push_back(sha);
      } catch (const pqxx::broken_connection&) {
        throw;  // the whole round waits for the next one
      } catch (const pqxx::sql_error& e) {
        // This image only (e.g. refused by a foreign key): the others go on.
        spdlog::warn("decision=upload_gc_row_kept sha256={} reason=\"{}\"", sha,
                     detail::first_line(e.what()));
      }
    }
    return out;
  });
}

result<repository::prune_step> repository::prune_events(
    std::chrono::system_clock::time_point cutoff, std::size_t batch,
    const std::vector<std::string>& kept_commands) {
  if (batch == 0) throw std::invalid_argument("prune_events: an empty batch never ends");
  const auto cutoff_ms = detail::epoch_ms(cutoff);
  std::string kept = "{";
  for (const auto& c : kept_commands) {
    // Command names are [a-z.]; anything else would need quoting in the array literal.
    if (c.empty() || c.find_first_not_of("abcdefghijklmnopqrstuvwxyz.") != std::string::npos)
      throw std::invalid_argument("prune_events: not a command name: " + c);
    if (kept.size() > 1) kept += ',';
    kept += c;
  }
  kept += '}';
  return with_connection([&](pqxx::connection& c) -> result<prune_step> {
    prune_step step;
    pqxx::work tx{c};
    if (!tx.exec1(kTryLockPrune)[0].as<bool>()) {
      step.skipped = true;
      return step;
    }
    step.removed = tx.exec_params(kPruneStep, cutoff_ms, batch, kept).affected_rows();
    tx.commit();
    step.more = step.removed == batch;
    return step;
  });
}

result<nlohmann::json> repository::add_release(const protocol::release_add_args& a,
                                               std::uint64_t /*size: the upload's is used*/,
                                               const std::string& actor,
                                               const file_step& check_file) {
  const auto key = a.version.value.canonical();
  const std::optional<std::string> min_version =
      a.min_version ? std::optional<std::string>{a.min_version->text} : std::nullopt;
  return with_connection([&](pqxx::connection& c) -> result<nlohmann::json> {
    pqxx::work tx{c};
    // Under the image's lock its file is where the row says (a collection removes both).
    lock_image(tx, a.sha256);
    if (check_file)
      if (auto r = check_file(a.sha256); !r) return r.error();
    const auto rows = tx.exec_params(kInsertRelease, a.model, a.version.text, key, a.sha256,
                                     min_version, a.notes, a.image_sig, actor);
    if (rows.empty()) {
      // Nothing inserted: either the release exists or the upload does not.
      const auto existing = tx.exec_params(kExistingReleaseVersion, a.model, key);
      if (!existing.empty())
        return make_error(errc::conflict, "release " + a.model + " " +
                                              existing[0][0].as<std::string>() + " exists");
      if (!tx.exec_params1(kUploadExists, a.sha256)[0].as<bool>())
        return make_error(errc::not_found,
                          "no upload with sha256 " + a.sha256 + "; upload the image first");
      return make_error(errc::internal, "release not added");
    }
    auto j = release_json(rows[0]);
    tx.commit();
    return j;
  });
}

result<nlohmann::json> repository::get_release(const std::string& model,
                                               const protocol::semver& version) {
  const auto key = version.canonical();
  return with_connection([&](pqxx::connection& c) -> result<nlohmann::json> {
    pqxx::read_transaction tx{c};
    const auto rows = tx.exec_params(kGetRelease, model, key);
    if (rows.empty())
      return make_error(errc::not_found, "release " + model + " " + version.text() + " not found");
    return release_json(rows[0]);
  });
}

result<page> repository::list_releases(const protocol::release_list_args& a) {
  const int limit = clamp_limit(a.page.limit);
  return with_connection([&](pqxx::connection& c) -> result<page> {
    pqxx::read_transaction tx{c};
    const auto rows = tx.exec_params(kListReleases, a.model, a.page.after, limit + 1);
    return make_page(rows, limit, "id", release_json);
  });
}

result<nlohmann::json> repository::create_rollout(const protocol::rollout_create_args& a,
                                                  const std::string& actor) {
  const auto key = a.version.value.canonical();
  const auto target = detail::dump(a.tgt.to_json());
  return with_connection([&](pqxx::connection& c) -> result<nlohmann::json> {
    pqxx::work tx{c};
    const auto rows =
        tx.exec_params(kCreateRollout, a.name, a.model, key, target, a.allow_downgrade, actor);
    if (rows.empty())
      return make_error(errc::not_found,
                        "release " + a.model + " " + a.version.text + " not found");
    auto j = fetch_rollout(tx, rows[0][0].as<std::int64_t>(), false);
    if (!j) return make_error(errc::internal, "rollout not created");
    tx.commit();
    return std::move(*j);
  });
}

result<nlohmann::json> repository::get_rollout(std::int64_t id, bool with_counts) {
  return with_connection([&](pqxx::connection& c) -> result<nlohmann::json> {
    // One snapshot for the rollout and its counts.
    pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx{c};
    auto j = fetch_rollout(tx, id, with_counts);
    if (!j) return rollout_not_found(id);
    return std::move(*j);
  });
}

result<page> repository::list_rollouts(const protocol::rollout_list_args& a) {
  const int limit = clamp_limit(a.page.limit);
  const std::optional<std::string> state =
      a.state ? std::optional<std::string>{std::string{protocol::to_string(*a.state)}}
              : std::nullopt;
  return with_connection([&](pqxx::connection& c) -> result<page> {
    pqxx::read_transaction tx{c};
    const auto rows = tx.exec_params(kListRollouts, state, a.model, a.page.after, limit + 1);
    return make_page(rows, limit, "id", rollout_json);
  });
}

result<nlohmann::json> repository::update_rollout_percent(std::int64_t id,
                                                          std::uint32_t basis_points,
                                                          const std::string& actor) {
  return with_connection([&](pqxx::connection& c) -> result<nlohmann::json> {
    pqxx::work tx{c};
    const auto rows = tx.exec_params(kLockRollout, id);
    if (rows.empty()) return rollout_not_found(id);
    auto tgt = protocol::parse_target(detail::parse_json(rows[0][0]));
    if (!tgt) {
      spdlog::error("store: rollout {} has an unreadable target: {}", id, tgt.error().message);
      return make_error(errc::internal, "rollout " + std::to_string(id) + " has a bad target");
    }
    if (tgt->type != protocol::target::kind::percent)
      return make_error(errc::bad_request,
                        "rollout " + std::to_string(id) + " is not a percent rollout");
    if (rows[0][1].as<std::string>() == "cancelled")
      return make_error(errc::conflict, "rollout " + std::to_string(id) + " is cancelled");
    // Lowering it is allowed (PROTOCOL.md sets no direction): devices above the new percent
    // get no more offers; those that updated keep their version.
    if (basis_points != tgt->basis_points) {
      spdlog::info("decision=rollout_percent rollout={} from={} to={} operator={}", id,
                   percent_text(tgt->basis_points), percent_text(basis_points), actor);
      tgt->basis_points = basis_points;
      tx.exec_params0(kSetRolloutTarget, id, detail::dump(tgt->to_json()));
    }
    auto j = fetch_rollout(tx, id, false);
    if (!j) return rollout_not_found(id);
    tx.commit();
    return std::move(*j);
  });
}

result<nlohmann::json> repository::set_rollout_state(std::int64_t id,
                                                     protocol::rollout_state new_state,
                                                     const std::optional<std::string>& reason,
                                                     const std::string& /*actor*/) {
  const std::string state{protocol::to_string(new_state)};
  return with_connection([&](pqxx::connection& c) -> result<nlohmann::json> {
    pqxx::work tx{c};
    const auto rows = tx.exec_params(kLockRollout, id);
    if (rows.empty()) return rollout_not_found(id);
    if (rows[0][1].as<std::string>() == "cancelled") {
      // Cancelling again changes nothing and is not an error; anything else is.
      if (new_state != protocol::rollout_state::cancelled)
        return make_error(errc::conflict, "rollout " + std::to_string(id) + " is cancelled");
    } else if (rows[0][1].as<std::string>() != state || reason) {
      // Pausing a paused rollout again without a reason changes nothing, as cancelling twice.
      tx.exec_params0(kSetRolloutState, id, state, reason);
    }
    auto j = fetch_rollout(tx, id, false);
    if (!j) return rollout_not_found(id);
    tx.commit();
    return std::move(*j);
  });
}

result<page> repository::list_devices(const protocol::device_list_args& a) {
  const int limit = clamp_limit(a.page.limit);
  return with_connection([&](pqxx::connection& c) -> result<page> {
    pqxx::read_transaction tx{c};
    const auto rows = tx.exec_params(kListDevices, a.model, a.version, a.page.after, limit + 1);
    return make_page(rows, limit, "seq", device_json);
  });
}

result<nlohmann::json> repository::get_device(const std::string& id) {
  return with_connection([&](pqxx::connection& c) -> result<nlohmann::json> {
    pqxx::read_transaction tx{c};
    const auto rows = tx.exec_params(kGetDevice, id);
    if (rows.empty()) return make_error(errc::not_found, "device " + id + " not found");
    return device_json(rows[0]);
  });
}

result<page> repository::list_status(const protocol::status_list_args& a) {
  const int limit = clamp_limit(a.page.limit);
  const std::optional<std::string> state =
      a.state ? std::optional<std::string>{std::string{protocol::to_string(*a.state)}}
              : std::nullopt;
  return with_connection([&](pqxx::connection& c) -> result<page> {
    pqxx::read_transaction tx{c};
    const auto rows =
        tx.exec_params(kListStatus, a.device, a.rollout, state, a.page.after, limit + 1);
    return make_page(rows, limit, "id", status_json);
  });
}

result<page> repository::list_events(const protocol::events_list_args& a) {
  const int limit = clamp_limit(a.page.limit);
  return with_connection([&](pqxx::connection& c) -> result<page> {
    pqxx::read_transaction tx{c};
    const auto rows =
        tx.exec_params(kListEvents, a.device, a.kind, a.since, a.page.after, limit + 1);
    return make_page(rows, limit, "id", event_json);
  });
}

rollout::catalog repository::load_catalog() {
  auto cat = with_connection([&](pqxx::connection& c) {
    rollout::catalog out;
    pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx{c};
    std::unordered_map<std::int64_t, bool> loaded;  // release ids that parsed
    for (const auto& r : tx.exec(kCatalogReleases)) {
      rollout::release rel;
      rel.id = r[0].as<std::int64_t>();
      rel.model = r[1].as<std::string>();
      rel.version_text = r[2].as<std::string>();
      auto v = protocol::parse_semver(rel.version_text);
      if (!v) {
        spdlog::error("store: release {} skipped: bad version '{}'", rel.id, rel.version_text);
        continue;
      }
      rel.version = std::move(*v);
      if (!r[3].is_null()) {
        auto mv = protocol::parse_semver(r[3].c_str());
        if (!mv) {
          spdlog::error("store: release {} skipped: bad min_version '{}'", rel.id, r[3].c_str());
          continue;
        }
        rel.min_version = std::move(*mv);
      }
      rel.sha256 = r[4].as<std::string>();
      rel.size = static_cast<std::uint64_t>(r[5].as<std::int64_t>());
      rel.image_sig = detail::opt_string(r[6]);
      loaded[rel.id] = true;
      out.releases.push_back(std::move(rel));
    }
    for (const auto& r : tx.exec(kCatalogRollouts)) {
      rollout::rollout ro;
      ro.id = r[0].as<std::int64_t>();
      ro.id_text = std::to_string(ro.id);
      ro.name = r[1].as<std::string>();
      ro.release_id = r[2].as<std::int64_t>();
      if (!loaded.count(ro.release_id)) {
        spdlog::error("store: rollout {} skipped: its release {} was not loaded", ro.id,
                      ro.release_id);
        continue;
      }
      nlohmann::json target_json;
      try {
        target_json = nlohmann::json::parse(r[3].c_str());
      } catch (const nlohmann::json::exception& e) {
        spdlog::error("store: rollout {} skipped: target is not JSON: {}", ro.id, e.what());
        continue;
      }
      auto tgt = protocol::parse_target(target_json);
      if (!tgt) {
        spdlog::error("store: rollout {} skipped: bad target: {}", ro.id, tgt.error().message);
        continue;
      }
      ro.tgt = std::move(*tgt);
      const auto state = protocol::rollout_state_from_string(r[4].as<std::string>());
      if (!state) {
        spdlog::error("store: rollout {} skipped: bad state '{}'", ro.id, r[4].c_str());
        continue;
      }
      ro.state = *state;
      ro.allow_downgrade = r[5].as<bool>();
      out.rollouts.push_back(std::move(ro));
    }
    return out;
  });
  cat.index();  // after the move out of the lambda: the index points into the vectors
  return cat;
}

std::vector<device_state> repository::load_devices() {
  return with_connection([&](pqxx::connection& c) {
    std::vector<device_state> out;
    pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx{c};
    std::unordered_map<std::string, std::size_t> index;
    const auto devices = tx.exec(kAllDevices);
    out.reserve(devices.size());
    index.reserve(devices.size());
    for (const auto& r : devices) {
      device_state d;
      d.id = r[0].as<std::string>();
      d.model = r[1].as<std::string>();
      d.version = r[2].as<std::string>();
      d.attrs = detail::parse_json(r[3]);
      d.seen = detail::from_epoch_ms(r[4].as<std::int64_t>());
      index.emplace(d.id, out.size());
      out.push_back(std::move(d));
    }
    for (const auto& r : tx.exec(kAllRolloutDevices)) {
      const auto it = index.find(r[0].as<std::string>());
      if (it == index.end()) continue;  // a rollout row for a device never recorded
      out[it->second].rollouts.push_back({r[1].as<std::int64_t>(), r[2].as<std::string>(),
                                          r[3].as<std::string>(),
                                          detail::from_epoch_ms(r[4].as<std::int64_t>())});
    }
    return out;
  });
}

std::vector<recent_offer> repository::load_recent_offers(
    std::chrono::system_clock::time_point since) {
  const auto since_ms = detail::epoch_ms(since);
  return with_connection([&](pqxx::connection& c) {
    pqxx::read_transaction tx{c};
    std::vector<recent_offer> out;
    for (const auto& r : tx.exec_params(kRecentOffers, since_ms)) {
      recent_offer o;
      o.device = r[0].as<std::string>();
      o.sha256 = r[1].as<std::string>();
      o.size = static_cast<std::uint64_t>(r[2].as<std::int64_t>());
      o.rollout = r[3].as<std::int64_t>();
      o.at = detail::from_epoch_ms(r[4].as<std::int64_t>());
      out.push_back(std::move(o));
    }
    return out;
  });
}

}  // namespace otter::store
