#include "store/records.hpp"

#include <chrono>
#include <cstdio>

namespace otter::store {

std::string to_rfc3339(time_point t) {
  using namespace std::chrono;
  // floor, not duration_cast: a time before 1970 must not round towards the epoch.
  const auto ms = floor<milliseconds>(t);
  const auto day = floor<days>(ms);
  const year_month_day ymd{day};
  const hh_mm_ss<milliseconds> hms{ms - day};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ",
                static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                static_cast<unsigned>(ymd.day()), static_cast<int>(hms.hours().count()),
                static_cast<int>(hms.minutes().count()), static_cast<int>(hms.seconds().count()),
                static_cast<int>(hms.subseconds().count()));
  return buf;
}

nlohmann::json event_record::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  // Ids are strings on the wire, like rollout ids and cursors (safe beyond 2^53).
  j["id"] = std::to_string(id);
  j["at"] = to_rfc3339(at);
  j["kind"] = kind;
  j["device"] = device ? nlohmann::json(*device) : nlohmann::json(nullptr);
  j["actor"] = actor ? nlohmann::json(*actor) : nlohmann::json(nullptr);
  // Rollout ids are strings on the wire (they exceed JavaScript's safe integers eventually).
  j["rollout"] = rollout ? nlohmann::json(std::to_string(*rollout)) : nlohmann::json(nullptr);
  j["data"] = data.is_object() ? data : nlohmann::json::object();
  return j;
}

}  // namespace otter::store
