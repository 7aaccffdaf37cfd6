#include "service/device_handler.hpp"

#include <charconv>

#include <spdlog/spdlog.h>

#include "crypto/jws.hpp"
#include "protocol/messages.hpp"

namespace otter::service {

device_handler::device_handler(device_handler_deps deps, manifest_settings settings,
                               std::string instance)
    : d_(deps), settings_(settings), instance_(std::move(instance)) {}

store::event_record device_handler::event(std::string kind, const std::string& device) const {
  store::event_record e;
  e.at = d_.time.now();
  e.kind = std::move(kind);
  e.device = device;
  e.instance = instance_;
  return e;
}

store::device_note device_handler::status_note(const std::string& device,
                                               std::optional<std::int64_t> rollout,
                                               const std::string& version, const std::string& state,
                                               clock::time_point at) const {
  store::device_note n;
  n.at = at;
  n.origin = instance_;
  n.device = device;
  n.kind = store::device_note::kind_t::status;
  n.version = version;
  n.rollout = rollout;
  n.state = state;
  return n;
}

void device_handler::refuse(const std::string& device, const std::optional<std::string>& req,
                            const error& err, std::string_view what) {
  d_.counters.device_errors++;
  nlohmann::json answer;
  if (req) answer["req"] = *req;
  answer["code"] = to_string(err.code);
  answer["message"] = err.message;
  spdlog::info("decision=refuse device={} message={} code={} reason=\"{}\"", device, what,
               to_string(err.code), err.message);

  store::record_set set;
  auto e = event("error", device);
  e.data = {{"message", what}, {"code", to_string(err.code)}, {"error", err.message}};
  if (req) e.data["req"] = *req;
  set.events.push_back(std::move(e));
  if (!d_.records.submit(std::move(set))) d_.counters.unavailable++;
  d_.out.publish(d_.topics.error(device), protocol::to_wire(answer), 1, false);
}

namespace {

const char* message_name(protocol::topic_kind kind) {
  using protocol::topic_kind;
  return kind == topic_kind::device_check    ? "check"
         : kind == topic_kind::device_status ? "status"
         : kind == topic_kind::device_chunk  ? "chunk"
                                             : "unknown";
}

bool drop_invalid_subject(const protocol::parsed_topic& topic, std::string_view payload,
                          metrics& counters) {
  if (topic.subject_valid) return false;
  // The broker's ACL should make this impossible; the id cannot be stored, only logged.
  spdlog::warn("decision=drop reason=\"device id in topic is not a valid name\" bytes={}",
               payload.size());
  counters.device_errors++;
  return true;
}

}  // namespace

void device_handler::refuse_unread(const protocol::parsed_topic& topic, std::string_view payload,
                                   const error& err) {
  if (drop_invalid_subject(topic, payload, d_.counters)) return;
  refuse(topic.subject, protocol::peek_string_unparsed(payload, "req"), err,
         message_name(topic.kind));
}

void device_handler::refuse_retained(const protocol::parsed_topic& topic,
                                     std::string_view payload) {
  refuse_unread(topic, payload,
                make_error(errc::bad_request,
                           "a retained message is never acted on (the broker replays it on every "
                           "subscribe): publish with retain=false, and clear this one with an "
                           "empty retained message to the same topic"));
}

void device_handler::refuse_busy(const protocol::parsed_topic& topic, std::string_view payload) {
  refuse_unread(topic, payload,
                make_error(errc::rate_limited,
                           topic.kind == protocol::topic_kind::device_status
                               ? "too many of this device's status reports are waiting; report "
                                 "less often"
                               : "too many of this device's messages are waiting; wait for the "
                                 "answers before sending more"));
}

void device_handler::handle(const protocol::parsed_topic& topic, std::string_view payload) {
  using protocol::topic_kind;
  if (drop_invalid_subject(topic, payload, d_.counters)) return;
  const std::string& device = topic.subject;
  const char* what = message_name(topic.kind);
  if (topic.kind == topic_kind::device_unknown) {
    return refuse(device, std::nullopt,
                  make_error(errc::bad_request,
                             "unknown topic: devices publish to up/check, up/status or up/chunk"),
                  what);
  }
  auto obj = protocol::parse_object(payload);
  if (!obj)
    return refuse(device, protocol::peek_string_unparsed(payload, "req"), obj.error(), what);
  switch (topic.kind) {
    case topic_kind::device_check:
      return on_check(device, *obj);
    case topic_kind::device_status:
      return on_status(device, *obj);
    case topic_kind::device_chunk:
      return on_chunk(device, *obj);
    default:
      return;
  }
}

void device_handler::on_check(const std::string& device, const nlohmann::json& obj) {
  auto req = protocol::peek_string(obj, "req");
  auto parsed = protocol::parse_check(obj);
  if (!parsed) return refuse(device, req, parsed.error(), "check");
  const protocol::check_msg& m = *parsed;
  d_.counters.checks++;

  const auto now = d_.time.now();
  const auto iat = unix_seconds(now);
  auto seen = d_.devices.on_check(device, m, now);
  // However this check ends, the registry hears that its records were queued or refused.
  struct check_done_guard {
    device_registry& reg;
    const std::string& id;
    ~check_done_guard() { reg.check_done(id); }
  } done{d_.devices, device};
  auto catalog = d_.catalog.current();
  auto decision = rollout::select(*catalog, seen.facts);

  store::record_set set;
  auto check_ev = event("check", device);
  check_ev.at = now;
  check_ev.data = {{"req", m.req}, {"model", m.model}, {"version", m.version_text}};
  if (m.attrs) check_ev.data["attrs"] = *m.attrs;
  set.events.push_back(std::move(check_ev));

  if (seen.record_device) {
    store::device_record dev;
    dev.id = device;
    dev.model = m.model;
    dev.version = m.version_text;
    dev.has_attrs = m.attrs.has_value();
    if (m.attrs) dev.attrs = *m.attrs;
    dev.seen = now;
    set.devices.push_back(std::move(dev));
  }
  if (d_.shared && seen.changed) {
    store::device_note n;
    n.origin = instance_;
    n.device = device;
    n.model = m.model;
    n.version = m.version_text;
    if (m.attrs) n.attrs = *m.attrs;
    n.at = now;
    set.notes.push_back(std::move(n));
  }

  for (const auto& rb : seen.rolled_back) {
    // The report is about the release that was rolled back, as a device's own rolled_back
    // report is; the version the device runs now is in the error text and the event.
    // Versions are up to 128 characters each, a status error at most 256 (the database
    // refuses longer, and the whole record set with it); semver text is ASCII.
    const std::string why =
        ("checked in with " + m.version_text + " after success on " + rb.version)
            .substr(0, protocol::kMaxStatusError);
    set.statuses.push_back(store::status_record{device, rb.rollout, rb.version, "rolled_back",
                                                std::nullopt, why, now});
    set.rollout_devices.push_back(
        store::rollout_device_record{rb.rollout, device, "rolled_back", now});
    auto ev = event("status", device);
    ev.rollout = rb.rollout;
    ev.data = {{"state", "rolled_back"},
               {"version", rb.version},
               {"running", m.version_text},
               {"derived", true},
               {"error", why}};
    set.events.push_back(std::move(ev));
    if (d_.shared)
      set.notes.push_back(status_note(device, rb.rollout, rb.version, "rolled_back", now));
    spdlog::info("decision=rolled_back device={} rollout={} succeeded={} now={}", device,
                 rb.rollout, rb.version, m.version_text);
  }

  nlohmann::ordered_json claims;
  auto offer_ev = event("offer", device);
  if (decision) {
    std::optional<std::string> url;
    if (d_.download_url)
      url = d_.download_url(device, decision->rel->sha256, iat + settings_.ttl.count());
    claims = update_claims(device, m.version_text, m.nonce, iat, *decision, settings_, url);
    offer_ev.rollout = decision->chosen->id;
    offer_ev.data = {{"req", m.req},
                     {"update", true},
                     {"version", decision->rel->version_text},
                     {"from", m.version_text},
                     {"downgrade", decision->downgrade}};
    // A repeated offer changes nothing in rollout_devices (an offer never replaces a state).
    if (!d_.devices.was_offered(device, decision->chosen->id))
      set.rollout_devices.push_back(
          store::rollout_device_record{decision->chosen->id, device, "offered", now});
    if (d_.shared && d_.chunks)
      set.grants.push_back(store::grant_record{instance_, device, decision->rel->sha256,
                                               decision->rel->size, decision->chosen->id, now,
                                               decision->rel->version_text});
  } else {
    claims = no_update_claims(device, m.nonce, iat, settings_);
    offer_ev.data = {{"req", m.req}, {"update", false}, {"from", m.version_text}};
  }
  set.events.push_back(std::move(offer_ev));

  if (!d_.records.submit(std::move(set))) {
    d_.counters.unavailable++;
    return refuse(device, m.req,
                  make_error(errc::unavailable,
                             "the service cannot record events right now; check again later"),
                  "check");
  }

  if (seen.record_device) d_.devices.device_recorded(device, now);
  if (!seen.rolled_back.empty()) d_.devices.rollbacks_recorded(device, seen.rolled_back);

  const std::string manifest = crypto::jws_sign(d_.signer, claims);
  nlohmann::ordered_json answer;
  answer["req"] = m.req;
  answer["update"] = decision.has_value();
  answer["manifest"] = manifest;
  d_.out.publish(d_.topics.offer(device), protocol::to_wire(answer), 1, false);

  if (decision) {
    d_.counters.offers++;
    d_.devices.on_offer(device, decision->chosen->id, decision->rel->version_text, now);
    if (d_.chunks)
      d_.chunks->authorize(device, decision->rel->sha256, decision->rel->size,
                           decision->chosen->id);
    spdlog::info("decision=offer device={} model={} from={} version={} rollout={} downgrade={}",
                 device, m.model, m.version_text, decision->rel->version_text, decision->chosen->id,
                 decision->downgrade);
  } else {
    d_.counters.up_to_date++;
    spdlog::info("decision=up_to_date device={} model={} version={}", device, m.model,
                 m.version_text);
  }
}

void device_handler::on_status(const std::string& device, const nlohmann::json& obj) {
  auto req = protocol::peek_string(obj, "req");
  auto parsed = protocol::parse_status(obj);
  if (!parsed) return refuse(device, req, parsed.error(), "status");
  const protocol::status_msg& m = *parsed;
  const auto now = d_.time.now();
  if (d_.held) {
    // Reports are recorded in the order sent: behind one that waits, the next waits too.
    const bool behind = d_.held->holding(device);
    if (behind || (!m.rollout && !d_.devices.attribute(device, m.version))) {
      if (d_.held->hold(device, m, now, std::chrono::steady_clock::now())) {
        spdlog::info(
            "decision=status_held device={} version={} reason=\"{}\"", device, m.version_text,
            behind ? "an earlier report waits"
                   : "no offer of this version known here yet; waiting for another instance's");
        // The offer's note may have come between the look-up and the hold, and found
        // nothing held to release: look again (this is the device's worker).
        if (!behind && d_.devices.attribute(device, m.version)) release_held(device);
        return;
      }
      release_held(device);  // full: what waits goes first, then this one
    }
  }
  auto rollout_id = rollout_of(device, m);
  if (!rollout_id) return refuse(device, m.req, rollout_id.error(), "status");
  record_status(device, m, *rollout_id, now);
}

void device_handler::release_held(const std::string& device) {
  if (!d_.held) return;
  for (const auto& h : d_.held->take(device)) {
    auto rollout_id = rollout_of(device, h.msg);
    if (!rollout_id) {
      refuse(device, h.msg.req, rollout_id.error(), "status");
      continue;
    }
    record_status(device, h.msg, *rollout_id, h.at);
  }
}

result<std::optional<std::int64_t>> device_handler::rollout_of(
    const std::string& device, const protocol::status_msg& m) const {
  if (!m.rollout) return d_.devices.attribute(device, m.version);
  std::int64_t id = 0;  // not a number: no rollout has it, so "never offered" below
  const auto& text = *m.rollout;
  if (std::from_chars(text.data(), text.data() + text.size(), id).ptr != text.data() + text.size())
    id = 0;
  // A rollout of the catalog is taken on trust (another instance may have made the offer),
  // but not one for another model than the device reported: that would count the report in
  // a rollout the device cannot be part of.
  auto catalog = d_.catalog.current();
  const auto model = d_.devices.model_of(device);
  bool known = false;
  for (const auto& r : catalog->rollouts) {
    if (r.id != id) continue;
    const auto* rel = catalog->find_release(r.release_id);
    known = !model || !rel || rel->model == *model;
  }
  if (!known && !d_.devices.was_offered(device, id))
    return make_error(errc::not_found,
                      "rollout \"" + *m.rollout + "\" was never offered to this device");
  return std::optional<std::int64_t>(id);
}

void device_handler::record_status(const std::string& device, const protocol::status_msg& m,
                                   std::optional<std::int64_t> rollout_id, clock::time_point now) {
  d_.counters.statuses++;
  const std::string state(protocol::to_string(m.state));

  store::record_set set;
  auto ev = event("status", device);
  ev.at = now;
  ev.rollout = rollout_id;
  ev.data = {{"state", state}, {"version", m.version_text}};
  if (m.req) ev.data["req"] = *m.req;
  if (m.progress) ev.data["progress"] = *m.progress;
  if (m.error) ev.data["error"] = *m.error;
  set.events.push_back(std::move(ev));
  set.statuses.push_back(
      store::status_record{device, rollout_id, m.version_text, state, m.progress, m.error, now});
  if (rollout_id)
    set.rollout_devices.push_back(store::rollout_device_record{*rollout_id, device, state, now});
  if (d_.shared) set.notes.push_back(status_note(device, rollout_id, m.version_text, state, now));
  // `success` also records the device's new version, in the same all-or-nothing set. A device
  // that never checked in has no known model yet: its first check records it.
  if (m.state == protocol::status_state::success) {
    if (auto model = d_.devices.model_of(device)) {
      store::device_record dev;
      dev.id = device;
      dev.model = std::move(*model);
      dev.version = m.version_text;
      dev.seen = now;
      set.devices.push_back(std::move(dev));
    }
  }

  // The registry is updated only once the records are queued, so memory never runs ahead.
  if (!d_.records.submit(std::move(set))) {
    d_.counters.unavailable++;
    return refuse(device, m.req,
                  make_error(errc::unavailable,
                             "the service cannot record this report right now; send it again"),
                  "status");
  }
  d_.devices.on_status(device, rollout_id, m, now);
  spdlog::info("decision=status device={} state={} version={} rollout={}", device, state,
               m.version_text, rollout_id ? std::to_string(*rollout_id) : "none");
}

void device_handler::on_chunk(const std::string& device, const nlohmann::json& obj) {
  auto req = protocol::peek_string(obj, "req");
  auto parsed = protocol::parse_chunk_request(obj);
  if (!parsed) return refuse(device, req, parsed.error(), "chunk");
  d_.counters.chunk_requests++;
  if (!d_.chunks)
    return refuse(device, parsed->req,
                  make_error(errc::unavailable, "chunk download is not enabled on this server"),
                  "chunk");
  if (auto r = d_.chunks->request(device, *parsed); !r)
    refuse(device, parsed->req, r.error(), "chunk");
}

}  // namespace otter::service
