#pragma once
// Rollout targets: which devices a rollout is for.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "protocol/error.hpp"
#include "protocol/messages.hpp"

namespace otter::protocol {

struct target {
  enum class kind { all, percent, devices, group };
  kind type = kind::all;
  std::uint32_t basis_points = 0;  // percent only: round(P * 100), 0..10000
  std::vector<std::string> ids;    // devices only: valid names, 1..10000, no duplicates kept
  attr_map attrs;                  // group only: 1..16 pairs

  // {"type":"percent","percent":12.5} etc.; percent printed from basis points.
  nlohmann::json to_json() const;
};

// Errors are bad_request with a message naming the field. percent: number 0..100 with at most
// two decimals (12.345 refused); ids: non-empty array of valid names; attrs: like check attrs.
result<target> parse_target(const nlohmann::json& j);

}  // namespace otter::protocol
