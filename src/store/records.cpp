#include "store/records.hpp"

#include <spdlog/spdlog.h>
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

namespace {

// A JSON string (quoted, escaped; invalid UTF-8 replaced, never thrown).
void append_json_string(std::string& out, std::string_view s) {
  out += nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void append_json_string_or_null(std::string& out, const std::optional<std::string>& s) {
  if (s)
    append_json_string(out, *s);
  else
    out += "null";
}

}  // namespace

std::string event_record::to_json_text() const {
  // Keys in to_json()'s order (nlohmann::json sorts them), so both give the same bytes.
  std::string out;
  out.reserve(160 + data_text.size());
  out += "{\"actor\":";
  append_json_string_or_null(out, actor);
  out += ",\"at\":\"";
  out += to_rfc3339(at);
  out += "\",\"data\":";
  if (!data.is_object())
    out += "{}";
  else if (!data_text.empty())
    out += data_text;
  else
    out += data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  out += ",\"device\":";
  append_json_string_or_null(out, device);
  out += ",\"id\":\"";
  out += std::to_string(id);
  out += "\",\"kind\":";
  append_json_string(out, kind);
  out += ",\"rollout\":";
  if (rollout) {
    out += '"';
    out += std::to_string(*rollout);
    out += '"';
  } else {
    out += "null";
  }
  out += '}';
  return out;
}

namespace {

constexpr std::size_t kMaxNotifyPayload = 7000;  // PostgreSQL refuses 8000 bytes and more

// JSON arrays of the items, each under kMaxNotifyPayload; an item too long on its own is left
// out (a NOTIFY that PostgreSQL refuses would fail the whole batch).
std::vector<std::string> pack_notifications(const std::vector<std::string>& items) {
  std::vector<std::string> out;
  std::string current;
  for (const auto& item : items) {
    if (item.size() + 2 > kMaxNotifyPayload) continue;
    if (!current.empty() && current.size() + item.size() + 2 > kMaxNotifyPayload) {
      out.push_back(current + "]");
      current.clear();
    }
    current += current.empty() ? "[" : ",";
    current += item;
  }
  if (!current.empty()) out.push_back(current + "]");
  return out;
}

std::int64_t unix_ms(time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
time_point from_unix_ms(std::int64_t ms) {
  return time_point(std::chrono::milliseconds(ms));
}

}  // namespace

std::vector<std::string> grant_notifications(const std::vector<const grant_record*>& grants) {
  std::vector<std::string> items;
  items.reserve(grants.size());
  for (const auto* g : grants)
    items.push_back(nlohmann::json{
        {"o", g->origin},
        {"d", g->device},
        {"s", g->sha256},
        {"n", g->size},
        {"r", g->rollout},
        {"t", unix_ms(g->at)},
        {"v",
         g->version}}.dump());
  return pack_notifications(items);
}

std::vector<grant_record> parse_grant_notification(std::string_view payload) {
  std::vector<grant_record> out;
  const auto j = nlohmann::json::parse(payload, nullptr, false);
  if (!j.is_array()) return out;
  for (const auto& it : j) {
    if (!it.is_object()) continue;
    const auto o = it.find("o"), d = it.find("d"), s = it.find("s"), n = it.find("n"),
               r = it.find("r"), t = it.find("t");
    if (o == it.end() || d == it.end() || s == it.end() || n == it.end() || r == it.end() ||
        t == it.end() || !o->is_string() || !d->is_string() || !s->is_string() ||
        !n->is_number_unsigned() || !r->is_number_integer() || !t->is_number_integer())
      continue;
    grant_record g;
    g.origin = o->get<std::string>();
    g.device = d->get<std::string>();
    g.sha256 = s->get<std::string>();
    g.size = n->get<std::uint64_t>();
    g.rollout = r->get<std::int64_t>();
    g.at = from_unix_ms(t->get<std::int64_t>());
    if (const auto v = it.find("v"); v != it.end() && v->is_string())
      g.version = v->get<std::string>();
    out.push_back(std::move(g));
  }
  return out;
}

std::vector<std::string> device_notifications(const std::vector<const device_note*>& notes) {
  std::vector<std::string> items;
  items.reserve(notes.size());
  for (const auto* n : notes) {
    nlohmann::json j{{"o", n->origin}, {"d", n->device}, {"v", n->version}, {"t", unix_ms(n->at)}};
    if (n->kind == device_note::kind_t::check) {
      j["k"] = "check";
      j["m"] = n->model;
      if (n->attrs) j["a"] = *n->attrs;
    } else {
      j["k"] = "status";
      j["r"] = n->rollout ? nlohmann::json(*n->rollout) : nlohmann::json(nullptr);
      j["st"] = n->state;
    }
    auto item = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (item.size() + 2 > kMaxNotifyPayload && j.contains("a")) {
      // Sixteen long attributes of escaped or 4-byte characters can pass 8000 bytes: the
      // note goes without them, saying so, and the other instances read them from the row.
      spdlog::info("store: device note for {} sent without its attributes (too long for NOTIFY)",
                   n->device);
      j.erase("a");
      j["x"] = true;
      item = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    items.push_back(std::move(item));
  }
  return pack_notifications(items);
}

std::vector<device_note> parse_device_notification(std::string_view payload) {
  std::vector<device_note> out;
  const auto j = nlohmann::json::parse(payload, nullptr, false);
  if (!j.is_array()) return out;
  const auto text = [](const nlohmann::json& o, const char* key) -> const std::string* {
    const auto f = o.find(key);
    return f != o.end() && f->is_string() ? f->get_ptr<const std::string*>() : nullptr;
  };
  for (const auto& it : j) {
    if (!it.is_object()) continue;
    const auto *o = text(it, "o"), *d = text(it, "d"), *k = text(it, "k"), *v = text(it, "v");
    const auto t = it.find("t");
    if (!o || !d || !k || !v || t == it.end() || !t->is_number_integer()) continue;
    device_note n;
    n.origin = *o;
    n.device = *d;
    n.version = *v;
    n.at = from_unix_ms(t->get<std::int64_t>());
    if (*k == "check") {
      const auto* m = text(it, "m");
      if (!m) continue;
      n.kind = device_note::kind_t::check;
      n.model = *m;
      if (const auto a = it.find("a"); a != it.end()) {
        if (!a->is_object()) continue;
        n.attrs = *a;
      }
      if (const auto x = it.find("x"); x != it.end() && x->is_boolean())
        n.attrs_left_out = x->get<bool>();
    } else if (*k == "status") {
      const auto* st = text(it, "st");
      const auto r = it.find("r");
      if (!st || r == it.end() || !(r->is_null() || r->is_number_integer())) continue;
      n.kind = device_note::kind_t::status;
      n.state = *st;
      if (r->is_number_integer()) n.rollout = r->get<std::int64_t>();
    } else {
      continue;
    }
    out.push_back(std::move(n));
  }
  return out;
}

}  // namespace otter::store
