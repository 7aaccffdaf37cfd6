#pragma once
// What the hot path hands to the batched writer: plain values, no database types.
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace otter::store {

using time_point = std::chrono::system_clock::time_point;

struct event_record {
  std::int64_t id = 0;  // assigned by the writer (from the events sequence) when written
  time_point at;
  std::string kind;  // check, offer, status, chunk, error, command, upload, ...
  std::optional<std::string> device;
  std::optional<std::string> actor;
  std::optional<std::int64_t> rollout;
  std::string instance;
  nlohmann::json data = nlohmann::json::object();
  // `data` serialised, set by the writer, which needs the text for PostgreSQL anyway; empty
  // until then.
  std::string data_text;

  // The wire form of PROTOCOL.md: id (string of digits), at (RFC 3339), kind, device, actor,
  // rollout (string or null), data.
  nlohmann::json to_json() const;
  // The same as to_json().dump(), written as text (every check publishes two events: building
  // and copying a JSON tree for each was measurable), reusing data_text when set.
  std::string to_json_text() const;
};

// Upsert: first_seen keeps the earliest, last_seen/model/version take the latest; attrs are
// replaced only when has_attrs.
struct device_record {
  std::string id;
  std::string model;
  std::string version;
  bool has_attrs = false;
  nlohmann::json attrs = nlohmann::json::object();
  time_point seen;
};

struct status_record {
  std::string device;
  std::optional<std::int64_t> rollout;
  std::string version;
  std::string state;
  std::optional<int> progress;
  std::optional<std::string> error;
  time_point at;
};

// Upsert of (rollout, device): state is "offered" or a status state. An "offered" record
// never overwrites a later status state; it sets offered_at if unset.
struct rollout_device_record {
  std::int64_t rollout = 0;
  std::string device;
  std::string state;
  time_point at;
};

// A chunk grant (an update offer) that other instances must learn of: with shared
// subscriptions a device's chunk requests may reach an instance that did not make the offer.
// Not stored: the writer NOTIFYs it when the batch commits.
struct grant_record {
  std::string origin;  // the instance that made the offer
  std::string device;
  std::string sha256;
  std::uint64_t size = 0;
  std::int64_t rollout = 0;
  time_point at;
  std::string version;  // the offered release's (empty from an instance that did not send it)
};

// A change to what the service knows of a device, which other instances sharing the device
// topics must learn of, for any of them may get the device's next message: the model, version
// and attributes a check brought (group rollouts match the attributes), or a status report (a
// later check derives a rollback from a success). Not stored: the writer NOTIFYs them when the
// batch commits.
struct device_note {
  enum class kind_t { check, status };
  std::string origin;  // the instance that handled the message
  std::string device;
  kind_t kind = kind_t::check;
  std::string model;                    // check
  std::string version;                  // check: what the device runs; status: what it reports
  std::optional<nlohmann::json> attrs;  // check, when the device sent them
  // check: it sent attributes too long for NOTIFY; they are in the devices row, which was
  // committed with the note.
  bool attrs_left_out = false;
  std::optional<std::int64_t> rollout;  // status
  std::string state;                    // status
  time_point at{};                      // when the message was handled
};

// Everything one incoming message causes, written together or not at all.
struct record_set {
  std::vector<event_record> events;
  std::vector<device_record> devices;
  std::vector<status_record> statuses;
  std::vector<rollout_device_record> rollout_devices;
  std::vector<grant_record> grants;
  std::vector<device_note> notes;

  std::size_t size() const noexcept {
    return events.size() + devices.size() + statuses.size() + rollout_devices.size() +
           grants.size() + notes.size();
  }
};

// The payloads of NOTIFY otter_grants for `grants`: JSON arrays, each under PostgreSQL's
// 8000-byte limit. Inverse: parse_grant_notification (records it cannot read are skipped).
std::vector<std::string> grant_notifications(const std::vector<const grant_record*>& grants);
std::vector<grant_record> parse_grant_notification(std::string_view payload);
// The same for NOTIFY otter_devices.
std::vector<std::string> device_notifications(const std::vector<const device_note*>& notes);
std::vector<device_note> parse_device_notification(std::string_view payload);

// RFC 3339 UTC with milliseconds, e.g. "2026-11-27T21:00:07.123Z".
std::string to_rfc3339(time_point t);

}  // namespace otter::store
