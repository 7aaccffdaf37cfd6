#include "rollout/catalog.hpp"

#include <algorithm>

#include "rollout/bucket.hpp"

namespace otter::rollout {

catalog::catalog(const catalog& other) : releases(other.releases), rollouts(other.rollouts) {
  index();
}

catalog& catalog::operator=(const catalog& other) {
  if (this != &other) {
    releases = other.releases;
    rollouts = other.rollouts;
    index();
  }
  return *this;
}

void catalog::index() {
  release_by_id_.clear();
  by_model_.clear();
  release_by_id_.reserve(releases.size());
  for (std::size_t i = 0; i < releases.size(); ++i) release_by_id_.emplace(releases[i].id, i);
  for (const auto& r : rollouts) {
    if (r.state == protocol::rollout_state::cancelled) continue;
    // A rollout belongs to the model of its release; one without a release can never be offered.
    const release* rel = find_release(r.release_id);
    if (rel == nullptr) continue;
    by_model_[rel->model].push_back(&r);
  }
}

const release* catalog::find_release(std::int64_t id) const {
  const auto it = release_by_id_.find(id);
  if (it == release_by_id_.end() || it->second >= releases.size()) return nullptr;
  return &releases[it->second];
}

const std::vector<const rollout*>& catalog::rollouts_of_model(const std::string& model) const {
  static const std::vector<const rollout*> kNone;
  const auto it = by_model_.find(model);
  return it == by_model_.end() ? kNone : it->second;
}

bool target_includes(const protocol::target& t, const std::string& rollout_id_text,
                     const device_facts& d) {
  using kind = protocol::target::kind;
  switch (t.type) {
    case kind::all:
      return true;
    case kind::percent:
      return in_percent(bucket(rollout_id_text, d.id), t.basis_points);
    case kind::devices:
      return std::find(t.ids.begin(), t.ids.end(), d.id) != t.ids.end();
    case kind::group:
      return std::all_of(t.attrs.begin(), t.attrs.end(), [&](const auto& kv) {
        const auto it = d.attrs.find(kv.first);
        return it != d.attrs.end() && it->second == kv.second;
      });
  }
  return false;
}

std::optional<decision> select(const catalog& c, const device_facts& d) {
  const rollout* best = nullptr;
  const release* best_rel = nullptr;
  for (const rollout* r : c.rollouts_of_model(d.model)) {
    if (r->state != protocol::rollout_state::active) continue;
    const release* rel = c.find_release(r->release_id);
    if (rel == nullptr || rel->model != d.model) continue;
    const auto order = rel->version <=> d.version;
    const bool wanted = order > 0 || (r->allow_downgrade && order != 0);
    if (!wanted) continue;
    if (rel->min_version && *rel->min_version > d.version) continue;
    // The cheap version tests go first: hashing for percent targets costs more.
    if (!target_includes(r->tgt, r->id_text, d)) continue;
    if (best != nullptr) {
      const auto vs = rel->version <=> best_rel->version;
      if (vs < 0 || (vs == 0 && r->id <= best->id)) continue;
    }
    best = r;
    best_rel = rel;
  }
  if (best == nullptr) return std::nullopt;
  return decision{best, best_rel, best_rel->version < d.version};
}

}  // namespace otter::rollout
