#include "service/admin_handler.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "protocol/ids.hpp"
#include "protocol/messages.hpp"

namespace otter::service {
namespace {

bool changes_catalog(const std::string& cmd) {
  return cmd == "release.add" || cmd == "rollout.create" || cmd == "rollout.update" ||
         cmd == "rollout.pause" || cmd == "rollout.resume" || cmd == "rollout.cancel";
}

bool reads_records(const std::string& cmd) {
  return cmd == "rollout.get" || cmd == "device.list" || cmd == "device.get" ||
         cmd == "status.list" || cmd == "events.list";
}

template <class T, class F>
result<nlohmann::json> then(result<T> parsed, F&& f) {
  if (!parsed) return std::move(parsed).error();
  return f(*parsed);
}

result<nlohmann::json> page_json(result<store::page> p) {
  if (!p) return std::move(p).error();
  return p->to_json();
}

}  // namespace

admin_handler::admin_handler(admin_handler_deps deps, admin_settings settings)
    : d_(std::move(deps)), s_(std::move(settings)) {}

admin_handler::~admin_handler() {
  stop();
}

void admin_handler::start() {
  thread_ = std::thread([this] { run(); });
}

void admin_handler::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void admin_handler::submit(const protocol::parsed_topic& topic, std::string payload,
                           bool retained) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_ && queue_.size() < s_.queue_limit) {
      queue_.push_back(job{topic, std::move(payload), retained});
      cv_.notify_one();
      return;
    }
  }
  if (!topic.subject_valid) return;
  nlohmann::json id = nullptr;
  if (topic.kind == protocol::topic_kind::admin_upload) id = topic.upload_id;
  respond(topic.subject, id,
          make_error(errc::unavailable, "too many commands are waiting; send it again shortly"));
}

void admin_handler::run() {
  // Collect once at start-up too: a service that restarts often would otherwise never do it.
  auto next_gc = std::chrono::steady_clock::now();
  const bool pruning = s_.event_retention.count() > 0;
  auto next_prune = pruning ? next_gc : std::chrono::steady_clock::time_point::max();
  // Stopping finishes the queued commands, without housekeeping between them.
  const auto stopping = [this] {
    std::lock_guard lock(mu_);
    return stopping_;
  };
  for (;;) {
    if (std::chrono::steady_clock::now() >= next_gc && !stopping()) {
      try {
        collect_uploads(d_.time.now());
      } catch (const std::exception& e) {
        spdlog::error("decision=upload_gc_failed error=\"{}\"", e.what());
      }
      next_gc = std::chrono::steady_clock::now() + s_.gc_interval;
    }
    if (pruning && std::chrono::steady_clock::now() >= next_prune && !stopping()) {
      bool more = false;
      try {
        more = prune_events(d_.time.now());
      } catch (const std::exception& e) {
        spdlog::error("decision=events_prune_failed error=\"{}\"", e.what());
      }
      // While old events remain, steps follow each other with a pause (a backlog of months
      // must not hold PostgreSQL's CPU against the record writer) and with every waiting
      // command answered in between.
      next_prune = std::chrono::steady_clock::now() + (more ? s_.prune_pause : s_.gc_interval);
    }
    const auto next_due = std::min(next_gc, next_prune);
    job j;
    {
      std::unique_lock lock(mu_);
      cv_.wait_until(lock, next_due, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) {
        if (stopping_) {
          end_prune_round("", "the round was cut short by the stop");
          return;
        }
        continue;  // time to collect or prune
      }
      j = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      handle(j);
    } catch (const std::exception& e) {
      // A fault in one command must not take the service down; the operator is told.
      spdlog::error("decision=command_failed operator={} error=\"{}\"", j.topic.subject, e.what());
      respond(j.topic.subject, nullptr, make_error(errc::internal, "internal error; see the log"));
    }
  }
}

std::vector<std::string> admin_handler::collect_uploads(clock::time_point now) {
  const auto cutoff = now - s_.upload_gc;
  // Each image's row and file go together under its lock, which an upload of the same image
  // on another instance sharing the data folder takes too.
  auto gone = d_.repo.delete_unreferenced_uploads(
      cutoff, [this](const std::string& sha) { return d_.images.remove(sha); });
  if (!gone) {
    spdlog::warn("decision=upload_gc_skipped reason=\"{}\"", gone.error().message);
    return {};
  }
  for (const auto& sha : *gone)
    spdlog::info(
        "decision=upload_gc_removed sha256={} reason=\"no release references it "
        "and it is older than OTTER_UPLOAD_GC ({}s)\"",
        sha, s_.upload_gc.count());
  return std::move(gone).value();
}

bool admin_handler::prune_events(clock::time_point now) {
  static const auto kept = protocol::changing_commands();
  const auto cutoff = now - s_.event_retention;
  auto step = d_.repo.prune_events(cutoff, s_.prune_batch, kept);
  if (!step || step->skipped) {
    if (!step)
      spdlog::warn("decision=events_prune_skipped reason=\"{}\"", step.error().message);
    else
      spdlog::debug("decision=events_prune_skipped reason=\"another instance is pruning\"");
    end_prune_round("", "the round was interrupted");
    return false;
  }
  pruned_in_round_ += step->removed;
  d_.counters.events_pruned += step->removed;
  if (!step->more)
    end_prune_round(" older_than=" + store::to_rfc3339(cutoff),
                    "successful uploads and changing commands are kept");
  return step->more;
}

void admin_handler::end_prune_round(std::string_view fields, std::string_view why) {
  if (pruned_in_round_ > 0)
    spdlog::info("decision=events_pruned removed={}{} reason=\"OTTER_EVENT_RETENTION ({}s); {}\"",
                 pruned_in_round_, fields, s_.event_retention.count(), why);
  pruned_in_round_ = 0;
}

void admin_handler::handle(const job& j) {
  if (!j.topic.subject_valid) {
    spdlog::warn("decision=drop reason=\"operator name in topic is not a valid name\"");
    return;
  }
  if (j.topic.kind == protocol::topic_kind::admin_upload)
    handle_upload(j.topic.subject, j.topic.upload_id, j.payload, j.retained);
  else
    handle_request(j.topic.subject, j.payload, j.retained);
}

namespace {

// A retained request would run again at every restart or reconnect of the service, long after
// the operator meant it: it is answered with this error and recorded, never run.
error retained_refusal() {
  return make_error(errc::bad_request,
                    "a retained message is never run (the broker replays it on every subscribe): "
                    "publish with retain=false, and clear this one with an empty retained "
                    "message to the same topic");
}

}  // namespace

void admin_handler::respond(const std::string& op, const nlohmann::json& id,
                            const result<nlohmann::json>& r) {
  nlohmann::ordered_json answer;
  answer["id"] = id;
  answer["ok"] = r.ok();
  if (r.ok()) {
    answer["result"] = r.value();
  } else {
    answer["error"] = {{"code", to_string(r.error().code)}, {"message", r.error().message}};
  }
  d_.out.publish(d_.topics.admin_response(op), protocol::to_wire(answer), 1, false);
}

void admin_handler::record_operator_event(const std::string& kind, const std::string& op,
                                          nlohmann::json data, const error* failure,
                                          std::optional<std::int64_t> rollout) {
  store::record_set set;
  store::event_record e;
  e.at = d_.time.now();
  e.kind = kind;
  e.actor = op;
  e.instance = s_.instance;
  e.rollout = rollout;
  e.data = std::move(data);
  e.data["ok"] = failure == nullptr;
  if (failure) {
    e.data["code"] = to_string(failure->code);
    e.data["error"] = failure->message;
  }
  set.events.push_back(std::move(e));
  if (!d_.records.submit(std::move(set))) d_.counters.unavailable++;
}

void admin_handler::record_command(const std::string& op, const nlohmann::json& id,
                                   const std::string& cmd, const nlohmann::json& args,
                                   const result<nlohmann::json>& r,
                                   std::optional<std::int64_t> rollout) {
  d_.counters.commands++;
  if (!r.ok()) d_.counters.command_errors++;
  record_operator_event(
      "command", op,
      {{"id", id}, {"cmd", protocol::without_nul(cmd)}, {"args", protocol::without_nul(args)}},
      r.ok() ? nullptr : &r.error(), rollout);
  if (r.ok())
    spdlog::info("decision=command operator={} cmd={} id={} ok=true", op, cmd, id.dump());
  else
    spdlog::info("decision=command operator={} cmd={} id={} ok=false code={} reason=\"{}\"", op,
                 cmd, id.dump(), to_string(r.error().code), r.error().message);
}

void admin_handler::handle_request(const std::string& op, std::string_view payload, bool retained) {
  nlohmann::json id = nullptr;
  auto obj =
      retained ? result<nlohmann::json>(retained_refusal()) : protocol::parse_object(payload);
  if (!obj) {
    if (auto peek = protocol::peek_string_unparsed(payload, "id")) id = *peek;
    const auto cmd = retained ? protocol::peek_string_unparsed(payload, "cmd").value_or("") : "";
    record_command(op, id, cmd, nullptr, obj.error(), std::nullopt);
    return respond(op, id, obj.error());
  }
  if (auto peek = protocol::peek_string(*obj, "id")) id = *peek;
  auto req = protocol::parse_admin_request(*obj);
  if (!req) {
    const std::string cmd = obj->contains("cmd") && (*obj)["cmd"].is_string()
                                ? (*obj)["cmd"].get<std::string>()
                                : std::string();
    record_command(op, id, cmd, nullptr, req.error(), std::nullopt);
    return respond(op, id, req.error());
  }
  auto r = execute(op, *req);
  std::optional<std::int64_t> rollout;
  if (r.ok() && r.value().is_object() && r.value().contains("id") &&
      req->cmd.rfind("rollout.", 0) == 0 && r.value()["id"].is_string()) {
    try {
      rollout = std::stoll(r.value()["id"].get<std::string>());
    } catch (const std::exception&) {
    }
  }
  record_command(op, id, req->cmd, req->args, r, rollout);
  respond(op, id, r);
}

result<void> admin_handler::check_image_sig(const protocol::release_add_args& x) {
  if (!x.image_sig) {
    if (s_.require_signed)
      return make_error(errc::bad_request,
                        "this server requires signed releases (OTTER_REQUIRE_SIGNED): add "
                        "image_sig, made with `otterd sign-image`");
    return {};
  }
  if (!decode_image_sig(*x.image_sig))
    return make_error(errc::bad_request,
                      "image_sig must be base64url of the 64-byte r||s signature that "
                      "`otterd sign-image` prints");
  if (!s_.release_keys || s_.release_keys->empty()) {
    spdlog::warn(
        "decision=image_sig_unchecked model={} version={} reason=\"OTTER_RELEASE_KEYS "
        "is not set; stored for devices to verify\"",
        x.model, x.version.text);
    return {};
  }
  // The signature is over the image's SHA-256, which is the upload's name: the image store
  // computed it itself from the bytes, so the file need not be read again.
  const auto digest = digest_from_hex(x.sha256);
  if (!digest || !s_.release_keys->verify(std::string_view(*x.image_sig), *digest)) {
    spdlog::info("decision=image_sig_refused model={} version={} sha256={}", x.model,
                 x.version.text, x.sha256);
    return make_error(errc::bad_request,
                      "image_sig does not verify with any key in OTTER_RELEASE_KEYS");
  }
  spdlog::info("decision=image_sig_verified model={} version={} sha256={}", x.model, x.version.text,
               x.sha256);
  return {};
}

result<nlohmann::json> admin_handler::execute(const std::string& op,
                                              const protocol::admin_request& r) {
  auto role = s_.operators.find(op);
  if (role == s_.operators.end())
    return make_error(errc::unauthorized,
                      "operator \"" + op + "\" is not configured on this server (OTTER_OPERATORS)");
  if (!protocol::is_known_command(r.cmd))
    return make_error(errc::bad_request, "unknown command \"" + r.cmd + "\"");
  if (role->second != config::role::admin && !protocol::is_read_only_command(r.cmd))
    return make_error(errc::unauthorized, "operator \"" + op + "\" is a viewer; \"" + r.cmd +
                                              "\" needs the admin role");
  if (reads_records(r.cmd) && d_.flush_records) d_.flush_records();

  auto& repo = d_.repo;
  const auto& a = r.args;
  result<nlohmann::json> out = make_error(errc::internal, "command not dispatched");
  if (r.cmd == "release.add") {
    out = then(protocol::parse_release_add(a), [&](const protocol::release_add_args& x) {
      std::uint64_t size = 0;
      auto exists = repo.upload_exists(x.sha256, &size);
      if (!exists) return result<nlohmann::json>(std::move(exists).error());
      if (!*exists || !d_.images.contains(x.sha256))
        return result<nlohmann::json>(make_error(
            errc::not_found, "no upload with sha256 " + x.sha256 + "; upload the image first"));
      if (auto sig = check_image_sig(x); !sig)
        return result<nlohmann::json>(std::move(sig).error());
      return repo.add_release(x, size, op, [this](const std::string& sha) -> result<void> {
        if (d_.images.contains(sha)) return {};
        return make_error(errc::not_found, "the image file of upload " + sha +
                                               " is missing; upload the image again");
      });
    });
  } else if (r.cmd == "release.get") {
    out = then(protocol::parse_release_get(a), [&](const protocol::release_get_args& x) {
      return repo.get_release(x.model, x.version.value);
    });
  } else if (r.cmd == "release.list") {
    out = then(protocol::parse_release_list(a), [&](const protocol::release_list_args& x) {
      return page_json(repo.list_releases(x));
    });
  } else if (r.cmd == "rollout.create") {
    out = then(protocol::parse_rollout_create(a),
               [&](const protocol::rollout_create_args& x) { return repo.create_rollout(x, op); });
  } else if (r.cmd == "rollout.get") {
    out = then(protocol::parse_rollout_ref(a),
               [&](const protocol::rollout_ref_args& x) { return repo.get_rollout(x.id, true); });
  } else if (r.cmd == "rollout.list") {
    out = then(protocol::parse_rollout_list(a), [&](const protocol::rollout_list_args& x) {
      return page_json(repo.list_rollouts(x));
    });
  } else if (r.cmd == "rollout.update") {
    out = then(protocol::parse_rollout_update(a), [&](const protocol::rollout_update_args& x) {
      if (!x.basis_points)
        return result<nlohmann::json>(
            make_error(errc::bad_request, "nothing to update: give \"percent\""));
      return repo.update_rollout_percent(x.id, *x.basis_points, op);
    });
  } else if (r.cmd == "rollout.pause" || r.cmd == "rollout.resume" || r.cmd == "rollout.cancel") {
    const auto state = r.cmd == "rollout.pause"    ? protocol::rollout_state::paused
                       : r.cmd == "rollout.resume" ? protocol::rollout_state::active
                                                   : protocol::rollout_state::cancelled;
    out = then(protocol::parse_rollout_ref(a), [&](const protocol::rollout_ref_args& x) {
      return repo.set_rollout_state(x.id, state, x.reason, op);
    });
  } else if (r.cmd == "device.list") {
    out = then(protocol::parse_device_list(a), [&](const protocol::device_list_args& x) {
      return page_json(repo.list_devices(x));
    });
  } else if (r.cmd == "device.get") {
    out = then(protocol::parse_device_get(a),
               [&](const protocol::device_get_args& x) { return repo.get_device(x.id); });
  } else if (r.cmd == "status.list") {
    out = then(protocol::parse_status_list(a),
               [&](const protocol::status_list_args& x) { return page_json(repo.list_status(x)); });
  } else if (r.cmd == "events.list") {
    out = then(protocol::parse_events_list(a),
               [&](const protocol::events_list_args& x) { return page_json(repo.list_events(x)); });
  } else if (r.cmd == "metrics.get") {
    out = d_.service_metrics ? d_.service_metrics() : d_.counters.to_json();
  }
  if (out.ok() && changes_catalog(r.cmd) && d_.reload_catalog) d_.reload_catalog();
  return out;
}

void admin_handler::handle_upload(const std::string& op, const std::string& upload_id,
                                  std::string_view payload, bool retained) {
  nlohmann::json id = upload_id;
  auto finish = [&](const result<nlohmann::json>& r) {
    nlohmann::json data = {{"id", upload_id}, {"bytes", payload.size()}};
    if (r.ok()) data["sha256"] = r.value()["sha256"];
    record_operator_event("upload", op, std::move(data), r.ok() ? nullptr : &r.error(),
                          std::nullopt);
    spdlog::info("decision=upload operator={} id={} bytes={} ok={}{}", op, upload_id,
                 payload.size(), r.ok(), r.ok() ? "" : " reason=\"" + r.error().message + "\"");
    respond(op, id, r);
  };
  if (retained) return finish(retained_refusal());
  auto role = s_.operators.find(op);
  if (role == s_.operators.end())
    return finish(make_error(errc::unauthorized, "operator \"" + op + "\" is not configured"));
  if (role->second != config::role::admin)
    return finish(make_error(errc::unauthorized,
                             "operator \"" + op + "\" is a viewer; uploads need the admin role"));
  if (!protocol::valid_name(upload_id))
    return finish(
        make_error(errc::bad_request, "upload id must be 1 to 64 characters of [A-Za-z0-9_.-]"));
  if (payload.empty()) return finish(make_error(errc::bad_request, "the image is empty"));
  if (payload.size() > s_.max_upload)
    return finish(make_error(errc::bad_request, "the image is " + std::to_string(payload.size()) +
                                                    " bytes; the limit is " +
                                                    std::to_string(s_.max_upload) +
                                                    " (OTTER_MAX_UPLOAD)"));
  auto stored = d_.images.put(payload);
  if (!stored) return finish(std::move(stored).error());
  // Under the image's lock the file must still be there: another instance's collection may
  // have removed it between put() and now.
  auto added =
      d_.repo.add_upload(stored->sha256, stored->size, op, [&](const std::string&) -> result<void> {
        if (d_.images.contains(stored->sha256)) return {};
        auto again = d_.images.put(payload);
        if (!again) return std::move(again).error();
        return {};
      });
  if (!added) return finish(std::move(added).error());
  d_.counters.uploads++;
  finish(nlohmann::json{{"sha256", stored->sha256}, {"size", stored->size}});
}

}  // namespace otter::service
