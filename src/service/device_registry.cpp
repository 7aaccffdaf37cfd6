#include "service/device_registry.hpp"

#include <algorithm>

namespace otter::service {

namespace {

protocol::attr_map attrs_of(const nlohmann::json& stored) {
  protocol::attr_map out;
  if (stored.is_object())
    for (const auto& [k, v] : stored.items())
      if (v.is_string()) out[k] = v.get<std::string>();
  return out;
}

}  // namespace

device_registry::link device_registry::stored_link_locked(
    const store::device_state::rollout_entry& r) {
  return link{r.rollout, r.version, protocol::parse_semver(r.version), r.state, ++seq_, r.at};
}

device_registry::entry& device_registry::fill_locked(const store::device_state& d) {
  entry& e = devices_[d.id];
  e = entry{};
  e.model = d.model;
  e.version_text = d.version;
  e.attrs = attrs_of(d.attrs);
  e.facts_at = d.seen;
  for (const auto& r : d.rollouts) e.links.push_back(stored_link_locked(r));
  return e;
}

void device_registry::load(const std::vector<store::device_state>& devices) {
  std::lock_guard lock(mu_);
  devices_.clear();
  for (const auto& d : devices) fill_locked(d);
}

std::uint64_t device_registry::mark() const {
  std::lock_guard lock(mu_);
  return seq_;
}

void device_registry::refresh(const std::vector<store::device_state>& devices, std::uint64_t mark) {
  // In slices, so that checks are not held up behind a whole fleet.
  constexpr std::size_t kSlice = 1000;
  for (std::size_t from = 0; from < devices.size(); from += kSlice) {
    std::lock_guard lock(mu_);
    for (std::size_t i = from; i < std::min(devices.size(), from + kSlice); ++i) {
      const auto& d = devices[i];
      auto it = devices_.find(d.id);
      if (it == devices_.end()) {
        fill_locked(d);
        continue;
      }
      entry& e = it->second;
      // A check handled here whose records are not queued yet is not in what was read.
      const bool mine_newer = e.touched > mark || e.checks_in_flight > 0;
      if (!mine_newer) {
        e.model = d.model;
        e.version_text = d.version;
        e.attrs = attrs_of(d.attrs);
        e.facts_at = d.seen;
      }
      for (const auto& r : d.rollouts) {
        if (link* l = find_link(e, r.rollout)) {
          if (!mine_newer) {
            l->state = r.state;
            l->at = r.at;
          }
        } else {
          e.links.push_back(stored_link_locked(r));
        }
      }
    }
  }
}

device_registry::link* device_registry::find_link(entry& e, std::int64_t rollout) {
  for (auto& l : e.links)
    if (l.rollout == rollout) return &l;
  return nullptr;
}

device_registry::check_result device_registry::on_check(const std::string& id,
                                                        const protocol::check_msg& m,
                                                        time_point now) {
  std::lock_guard lock(mu_);
  check_result out;
  auto [it, inserted] = devices_.try_emplace(id);
  entry& e = it->second;
  out.is_new = inserted;
  const bool changed =
      e.model != m.model || e.version_text != m.version_text || (m.attrs && e.attrs != *m.attrs);
  if (changed) e.unrecorded_change = true;
  out.changed = changed || inserted;
  e.facts_at = now;
  ++e.checks_in_flight;  // check_done() then marks the entry touched
  // A new device has no recorded_seen yet.
  out.record_device = e.unrecorded_change || e.recorded_seen == time_point{} ||
                      now - e.recorded_seen >= kSeenResolution || now < e.recorded_seen;
  e.model = m.model;
  e.version_text = m.version_text;
  if (m.attrs) e.attrs = *m.attrs;
  for (const auto& l : e.links)
    if (l.state == "success" && l.version && m.version < *l.version)
      out.rolled_back.push_back({l.rollout, l.version_text});
  out.facts = rollout::device_facts{id, m.model, m.version, e.attrs};
  return out;
}

void device_registry::check_done(const std::string& id) {
  std::lock_guard lock(mu_);
  if (auto it = devices_.find(id); it != devices_.end()) {
    if (it->second.checks_in_flight > 0) --it->second.checks_in_flight;
    it->second.touched = ++seq_;  // queued now: after any mark a refresh took meanwhile
  }
}

void device_registry::device_recorded(const std::string& id, time_point seen) {
  std::lock_guard lock(mu_);
  if (auto it = devices_.find(id); it != devices_.end()) {
    it->second.recorded_seen = seen;
    it->second.unrecorded_change = false;
  }
}

void device_registry::rollbacks_recorded(const std::string& id,
                                         const std::vector<rollback>& rollbacks) {
  std::lock_guard lock(mu_);
  auto it = devices_.find(id);
  if (it == devices_.end()) return;
  for (const auto& rb : rollbacks)
    if (link* l = find_link(it->second, rb.rollout); l && l->state == "success") {
      l->state = "rolled_back";
      it->second.touched = ++seq_;
    }
}

void device_registry::on_offer(const std::string& id, std::int64_t rollout,
                               const std::string& version_text, time_point at) {
  std::lock_guard lock(mu_);
  entry& e = devices_[id];
  e.touched = ++seq_;
  if (link* l = find_link(e, rollout)) {
    l->offer_seq = ++seq_;
    return;
  }
  e.links.push_back(
      link{rollout, version_text, protocol::parse_semver(version_text), "offered", ++seq_, at});
}

std::optional<std::int64_t> device_registry::attribute(const std::string& id,
                                                       const protocol::semver& version) const {
  std::lock_guard lock(mu_);
  auto it = devices_.find(id);
  if (it == devices_.end()) return std::nullopt;
  const link* best = nullptr;
  for (const auto& l : it->second.links)
    if (l.version && *l.version == version && (!best || l.offer_seq > best->offer_seq)) best = &l;
  if (!best) return std::nullopt;
  return best->rollout;
}

bool device_registry::was_offered(const std::string& id, std::int64_t rollout) const {
  std::lock_guard lock(mu_);
  auto it = devices_.find(id);
  if (it == devices_.end()) return false;
  return std::any_of(it->second.links.begin(), it->second.links.end(),
                     [&](const link& l) { return l.rollout == rollout; });
}

std::optional<std::string> device_registry::model_of(const std::string& id) const {
  std::lock_guard lock(mu_);
  const auto it = devices_.find(id);
  if (it == devices_.end() || it->second.model.empty()) return std::nullopt;
  return it->second.model;
}

void device_registry::on_status(const std::string& id, std::optional<std::int64_t> rollout,
                                const protocol::status_msg& m, time_point at) {
  std::lock_guard lock(mu_);
  // A report may precede the first check; the check fills the rest.
  entry& e = devices_[id];
  e.touched = ++seq_;
  set_state_locked(e, rollout, std::string(protocol::to_string(m.state)), m.version_text, m.version,
                   at);
}

void device_registry::set_state_locked(entry& e, std::optional<std::int64_t> rollout,
                                       const std::string& state, const std::string& version_text,
                                       const std::optional<protocol::semver>& version,
                                       time_point at) {
  if (rollout) {
    if (link* l = find_link(e, *rollout)) {
      if (at >= l->at) {
        l->state = state;
        l->at = at;
      }
    } else {
      e.links.push_back(link{*rollout, version_text, version, state, 0, at});
    }
  }
  if (state == "success" && at >= e.facts_at) {
    e.version_text = version_text;
    e.facts_at = at;
  }
}

void device_registry::apply(const store::device_note& n) {
  std::lock_guard lock(mu_);
  entry& e = devices_[n.device];
  e.touched = ++seq_;  // newer than a stored state read before the note's batch committed
  if (n.kind == store::device_note::kind_t::status) {
    set_state_locked(e, n.rollout, n.state, n.version, protocol::parse_semver(n.version), n.at);
    return;
  }
  if (n.at < e.facts_at) return;  // this instance heard from the device since
  // The other instance wrote the devices row; this one's recorded_seen stays as it was.
  e.model = n.model;
  e.version_text = n.version;
  if (n.attrs && n.attrs->is_object()) e.attrs = attrs_of(*n.attrs);
  e.facts_at = n.at;
}

std::size_t device_registry::size() const {
  std::lock_guard lock(mu_);
  return devices_.size();
}

}  // namespace otter::service
