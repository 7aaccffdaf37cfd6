#pragma once
// The in-memory view of releases and rollouts that every check is answered from.
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "protocol/commands.hpp"
#include "protocol/messages.hpp"
#include "protocol/semver.hpp"
#include "protocol/target.hpp"

namespace otter::rollout {

struct release {
  std::int64_t id = 0;
  std::string model;
  std::string version_text;  // as added (may carry build metadata)
  protocol::semver version;
  std::optional<protocol::semver> min_version;
  std::string sha256;  // lowercase hex
  std::uint64_t size = 0;
  std::optional<std::string> image_sig;
};

struct rollout {
  std::int64_t id = 0;
  std::string id_text;  // decimal, as on the wire and in bucket hashing
  std::string name;
  std::int64_t release_id = 0;
  protocol::target tgt;
  protocol::rollout_state state = protocol::rollout_state::active;
  bool allow_downgrade = false;
};

struct catalog {
  std::vector<release> releases;
  std::vector<rollout> rollouts;

  catalog() = default;
  // A copy indexes its own vectors: copied pointers would point into the source's.
  catalog(const catalog& other);
  catalog& operator=(const catalog& other);
  // Moves keep the vectors' buffers, so the index stays valid.
  catalog(catalog&&) = default;
  catalog& operator=(catalog&&) = default;
  ~catalog() = default;

  // Build the lookup indexes; call after filling the vectors.
  void index();
  const release* find_release(std::int64_t id) const;
  // Active and paused rollouts of a model (cancelled ones are not kept in the index).
  const std::vector<const rollout*>& rollouts_of_model(const std::string& model) const;

 private:
  std::unordered_map<std::int64_t, std::size_t> release_by_id_;
  std::unordered_map<std::string, std::vector<const rollout*>> by_model_;
};

struct device_facts {
  std::string id;
  std::string model;
  protocol::semver version;
  protocol::attr_map attrs;
};

bool target_includes(const protocol::target& t, const std::string& rollout_id_text,
                     const device_facts& d);

struct decision {
  const rollout* chosen = nullptr;
  const release* rel = nullptr;
  bool downgrade = false;  // rel->version < device version
};

// PROTOCOL.md "Rollout selection": active rollouts of the device's model whose target includes
// it, whose version is above the device's (or differs, with allow_downgrade), and whose
// min_version (if set) is <= the device's version. Highest version wins; a tie goes to the
// newest rollout (highest id). nullopt: no update.
std::optional<decision> select(const catalog& c, const device_facts& d);

}  // namespace otter::rollout
