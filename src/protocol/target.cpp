#include "protocol/target.hpp"

#include <unordered_set>
#include <utility>

#include "protocol/fields.hpp"
#include "protocol/ids.hpp"

namespace otter::protocol {
namespace {

using json = nlohmann::json;

constexpr std::size_t kMaxTargetIds = 10000;
constexpr std::size_t kMaxGroupAttrs = 16;

result<std::vector<std::string>> read_ids(const json& v, std::string_view name) {
  if (!v.is_array() || v.empty() || v.size() > kMaxTargetIds)
    return detail::field_error(
        name, "must be an array of 1 to " + std::to_string(kMaxTargetIds) + " device ids");
  std::vector<std::string> ids;
  ids.reserve(v.size());
  std::unordered_set<std::string_view> seen;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const auto& e = v[i];
    if (!e.is_string() || !valid_name(e.get_ref<const std::string&>()))
      return detail::field_error(std::string(name) + "[" + std::to_string(i) + "]",
                                 "must be 1 to 64 characters of [A-Za-z0-9_.-]");
    // The views point into v, which outlives this loop.
    if (seen.insert(e.get_ref<const std::string&>()).second) ids.push_back(e.get<std::string>());
  }
  return ids;
}

}  // namespace

json target::to_json() const {
  switch (type) {
    case kind::all:
      return json{{"type", "all"}};
    case kind::percent: {
      // Whole percentages stay integers on the wire ("percent": 30, not 30.0).
      json p = basis_points % 100 == 0 ? json(basis_points / 100) : json(basis_points / 100.0);
      return json{{"type", "percent"}, {"percent", std::move(p)}};
    }
    case kind::devices:
      return json{{"type", "devices"}, {"ids", ids}};
    case kind::group:
      return json{{"type", "group"}, {"attrs", attrs}};
  }
  return json{{"type", "all"}};
}

result<target> parse_target(const json& j) {
  if (!j.is_object()) return detail::not_an_object("target");
  detail::field_reader r(j);
  target t;
  const auto type =
      r.required("type", [](const json& v, std::string_view name) -> result<std::string> {
        if (!v.is_string())
          return detail::field_error(name, "must be one of all, percent, devices, group");
        return v.get<std::string>();
      });
  if (r.ok()) {
    if (type == "all") {
      t.type = target::kind::all;
    } else if (type == "percent") {
      t.type = target::kind::percent;
      t.basis_points = r.required("percent", detail::read_percent);
    } else if (type == "devices") {
      t.type = target::kind::devices;
      t.ids = r.required("ids", read_ids);
    } else if (type == "group") {
      t.type = target::kind::group;
      t.attrs = r.required("attrs", detail::attrs_reader(1, kMaxGroupAttrs));
    } else {
      r.fail(detail::field_error("type", "must be one of all, percent, devices, group"));
    }
  }
  if (!r.ok()) {
    // Say where: the same field names occur outside targets ("attrs" of a check, "percent").
    auto e = r.take_error();
    e.message = "target: " + e.message;
    return e;
  }
  return t;
}

}  // namespace otter::protocol
