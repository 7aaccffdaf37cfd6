#include "sim/device.hpp"

#include <algorithm>
#include <charconv>

#include "crypto/hash.hpp"

// Local error codes (beside the service's): timeout (no answer to a check), rejected (the
// device refused a manifest), bad_offer (an answer without a manifest), bad_chunk (a chunk
// message that fits no request), chunk_timeout (a download stalled), sha256_mismatch,
// image_sig (release signature), no_chunk (a manifest without MQTT chunk delivery), no_url
// (a manifest without HTTP download, with --via http), http (an HTTP download failed or timed
// out), size_mismatch (an HTTP body of another length than the manifest's size).

namespace otter::sim {
namespace {

using nlohmann::json;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

constexpr std::size_t kMaxStatusError = 256;

// PROTOCOL.md caps a status error at 256 characters; cut at a UTF-8 boundary.
std::string cap_error(std::string_view s) {
  if (s.size() <= kMaxStatusError) return std::string(s);
  std::size_t n = kMaxStatusError;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return std::string(s.substr(0, n));
}

std::string json_string(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

milliseconds since(const sim_time& now, sim_clock::time_point then) {
  return duration_cast<milliseconds>(now.mono - then);
}

}  // namespace

std::string_view to_string(phase p) noexcept {
  switch (p) {
    case phase::idle:
      return "idle";
    case phase::checking:
      return "checking";
    case phase::downloading:
      return "downloading";
    case phase::installing:
      return "installing";
    case phase::rebooting:
      return "rebooting";
  }
  return "?";
}

device::device(std::string id, const protocol::semver& version, const device_settings& settings,
               const protocol::topics& topics, std::uint64_t seed)
    : id_(std::move(id)),
      version_(version),
      version_text_(version.text()),
      s_(settings),
      check_topic_(topics.device_check(id_)),
      status_topic_(topics.device_status(id_)),
      chunk_topic_(topics.device_chunk_request(id_)),
      rng_(seed) {
  down_prefix_ = topics.device_down_filter(id_);  // R/dev/D/down/#
  down_prefix_.pop_back();
}

std::chrono::milliseconds device::jittered(milliseconds base) {
  if (base.count() <= 0) return milliseconds(0);
  std::uniform_real_distribution<double> f(1.0 - s_.jitter, 1.0 + s_.jitter);
  return milliseconds(static_cast<std::int64_t>(static_cast<double>(base.count()) * f(rng_)));
}

void device::start(const sim_time& now) {
  phase_ = phase::idle;
  std::uniform_int_distribution<std::int64_t> spread(
      0, std::max<std::int64_t>(0, s_.first_check_within.count()));
  deadline_ = now.mono + milliseconds(spread(rng_));
}

void device::rest(const sim_time& now) {
  phase_ = phase::idle;
  fetch_id_ = 0;
  check_req_.clear();
  chunk_req_.clear();
  image_.reset();
  deadline_ = now.mono + std::max(jittered(s_.interval), milliseconds(1));
}

void device::on_timer(const sim_time& now, effects& fx) {
  switch (phase_) {
    case phase::idle:
      return send_check(now, fx);
    case phase::checking:
      fx.notes.push_back({note::kind::error, "timeout"});
      return rest(now);
    case phase::downloading:
      if (!s_.download) return downloaded(now, fx);  // the pretend download is over
      if (fetch_id_ != 0) {
        fetch_id_ = 0;  // a late result is ignored
        return fail(now, fx, "http",
                    "HTTP download of " + std::to_string(target_.size) +
                        " bytes did not finish within " +
                        std::to_string(s_.http_timeout.count() / 1000) + " s");
      }
      if (++retries_ > s_.chunk_retries)
        return fail(now, fx, "chunk_timeout",
                    "download stalled at byte " + std::to_string(image_->first_missing()) + " of " +
                        std::to_string(image_->size()) + ": no chunk after " +
                        std::to_string(s_.chunk_retries) + " re-requests");
      return request_chunks(now, fx);
    case phase::installing:
      return install_done(now, fx);
    case phase::rebooting:
      return reboot_done(now, fx);
  }
}

void device::send_check(const sim_time& now, effects& fx) {
  check_req_ = "c-" + std::to_string(++seq_);
  nonce_ = crypto::to_hex(crypto::random_bytes(16));
  json body = {
      {"req", check_req_}, {"model", s_.model}, {"version", version_text_}, {"nonce", nonce_}};
  if (s_.attrs.is_object() && !s_.attrs.empty()) body["attrs"] = s_.attrs;
  fx.publish.push_back({check_topic_, body.dump()});
  fx.notes.push_back({note::kind::check});
  phase_ = phase::checking;
  deadline_ = now.mono + s_.answer_timeout;
}

void device::on_message(const sim_time& now, std::string_view topic, std::string_view payload,
                        effects& fx) {
  if (!topic.starts_with(down_prefix_)) return;
  const auto rest = topic.substr(down_prefix_.size());
  if (rest == "offer") return on_offer(now, payload, fx);
  if (rest == "error") return on_error(now, payload, fx);
  if (rest.starts_with("chunk/")) return on_chunk(now, rest.substr(6), payload, fx);
}

void device::on_offer(const sim_time& now, std::string_view payload, effects& fx) {
  if (phase_ != phase::checking) return;  // a late answer to a check that timed out
  const auto answer = json::parse(payload, nullptr, false);
  if (!answer.is_object() || json_string(answer, "req") != check_req_) return;
  const auto compact = json_string(answer, "manifest");
  if (compact.empty()) {
    fx.notes.push_back({note::kind::error, "bad_offer"});
    return rest(now);
  }

  auto verdict = check_manifest(*s_.pinned, compact, {id_, nonce_, s_.model, version_, now.unix_s});
  const auto said_update = answer.find("update");
  if (verdict.accepted() &&
      (said_update == answer.end() || *said_update != json(verdict.claims.update)))
    verdict.refusal = "the offer's \"update\" disagrees with its signed manifest";
  if (!verdict.accepted()) {
    // Report what was refused, in terms the service can file: a readable version, and the
    // rollout only when the manifest is genuinely the service's.
    const auto& c = verdict.claims;
    const auto v = protocol::parse_semver(c.version);
    status(fx, "rejected", v ? c.version : version_text_, std::nullopt, verdict.refusal,
           verdict.signature_ok ? c.rollout : std::string());
    fx.notes.push_back({note::kind::error, "rejected"});
    return rest(now);
  }
  if (!verdict.claims.update) {
    fx.notes.push_back({note::kind::up_to_date});
    return rest(now);
  }
  begin_update(now, std::move(verdict.claims), fx);
}

void device::on_error(const sim_time& now, std::string_view payload, effects& fx) {
  const auto err = json::parse(payload, nullptr, false);
  if (!err.is_object()) return;
  const auto req = json_string(err, "req");
  auto code = json_string(err, "code");
  if (code.empty()) code = "unknown";
  if (phase_ == phase::checking && !req.empty() && req == check_req_) {
    fx.notes.push_back({note::kind::error, code});
    return rest(now);
  }
  if (phase_ == phase::downloading && !req.empty() && req == chunk_req_) {
    return fail(now, fx, code,
                "chunk request refused: " + code + ": " + json_string(err, "message"));
  }
  // An answer to a status report, or a stale one: counted, nothing to undo.
  fx.notes.push_back({note::kind::error, code});
}

void device::begin_update(const sim_time& now, manifest m, effects& fx) {
  target_ = std::move(m);
  accepted_at_ = now.mono;
  download_started_at_ = now.mono;
  // The fate is drawn up front so that one draw decides it: failed with fail_rate, rolled
  // back with half that.
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const double draw = u(rng_);
  fate_ = draw < s_.fail_rate ? fate::fail : draw < s_.fail_rate * 1.5 ? fate::roll_back : fate::ok;
  fx.notes.push_back({note::kind::update});
  phase_ = phase::downloading;
  reported_progress_ = 0;
  retries_ = 0;
  status(fx, "downloading", target_.version, 0, {}, target_.rollout);
  if (!s_.download) {
    deadline_ = now.mono + jittered(s_.fake_download_time);
    return;
  }
  if (s_.via == transport::http) return fetch_image(now, fx);
  if (target_.chunk_file.empty())
    return fail(now, fx, "no_chunk",
                "the manifest offers no MQTT chunk download (only a url); otter-sim needs chunk");
  window_ = s_.window.value_or(target_.chunk_window);
  image_ = std::make_unique<image_download>(target_.size, s_.chunk_len.value_or(target_.chunk_max));
  request_chunks(now, fx);
}

void device::fetch_image(const sim_time& now, effects& fx) {
  if (!target_.url || target_.url->empty())
    return fail(now, fx, "no_url",
                "the manifest offers no HTTP download (no url): is OTTER_HTTP_ADDR set on the "
                "service? Or use --via mqtt");
  fetch_id_ = ++seq_;
  fx.fetches.push_back({fetch_id_, *target_.url, target_.size});
  deadline_ = now.mono + s_.http_timeout;
}

void device::on_fetched(const sim_time& now, const fetch_result& r, effects& fx) {
  if (phase_ != phase::downloading || fetch_id_ == 0 || r.id != fetch_id_) return;
  fetch_id_ = 0;
  if (!r.error.empty()) return fail(now, fx, "http", "HTTP download failed: " + r.error);
  if (r.bytes != target_.size)
    return fail(now, fx, "size_mismatch",
                "HTTP download gave " + std::string(r.bytes > target_.size ? "more than " : "") +
                    std::to_string(r.bytes) + " bytes; the manifest says " +
                    std::to_string(target_.size));
  if (!verify_image(now, r.sha256, fx)) return;
  status(fx, "downloading", target_.version, 100, {}, target_.rollout);
  verified(now, fx);
}

void device::request_chunks(const sim_time& now, effects& fx) {
  const std::uint64_t offset = image_->first_missing();
  const std::uint64_t len = image_->chunk_len();
  // Only up to the next chunk already held: after a loss, just the gap.
  const std::uint64_t count = std::min<std::uint64_t>(window_, image_->gap_chunks());
  chunk_req_ = "k-" + std::to_string(++seq_);
  const json body = {{"req", chunk_req_},
                     {"file", target_.chunk_file},
                     {"offset", offset},
                     {"len", len},
                     {"count", count}};
  fx.publish.push_back({chunk_topic_, body.dump()});
  request_end_ = std::min(image_->size(), offset + count * len);
  deadline_ = now.mono + s_.chunk_timeout * (1 << std::min(retries_, 3));
}

void device::on_chunk(const sim_time& now, std::string_view rest, std::string_view payload,
                      effects& fx) {
  if (phase_ != phase::downloading || !image_) return;  // late copies after the download
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos || rest.substr(0, slash) != target_.chunk_file) return;
  const auto digits = rest.substr(slash + 1);
  std::uint64_t offset = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), offset);
  if (ec != std::errc() || end != digits.data() + digits.size()) {
    fx.notes.push_back({note::kind::error, "bad_chunk"});
    return;
  }
  switch (image_->add(offset, payload)) {
    case image_download::outcome::stored:
      retries_ = 0;  // progress: the re-request budget is for silence in a row
      break;
    case image_download::outcome::duplicate:
      return;
    case image_download::outcome::bad_offset:
    case image_download::outcome::bad_length:
      fx.notes.push_back({note::kind::error, "bad_chunk"});
      return;
  }
  progress(fx);
  if (image_->complete()) return downloaded(now, fx);
  // Every chunk of this request is in: ask for the next window at once. A gap waits for the
  // timeout, then the next request starts at the first missing offset.
  if (image_->first_missing() >= request_end_) request_chunks(now, fx);
}

void device::progress(effects& fx) {
  const auto pct = static_cast<int>(image_->first_missing() * 100 / image_->size());
  const int step = pct / 25 * 25;
  if (step <= reported_progress_) return;
  reported_progress_ = step;
  status(fx, "downloading", target_.version, step, {}, target_.rollout);
}

void device::downloaded(const sim_time& now, effects& fx) {
  if (image_) {
    const auto digest = image_->finish();
    image_.reset();
    if (!verify_image(now, digest, fx)) return;
  } else {
    status(fx, "downloading", target_.version, 100, {}, target_.rollout);
  }
  verified(now, fx);
}

bool device::verify_image(const sim_time& now, const crypto::digest& digest, effects& fx) {
  const auto hex = crypto::to_hex(digest);
  if (hex != target_.sha256) {
    fail(now, fx, "sha256_mismatch",
         "image sha256 " + hex + " does not match the manifest's " + target_.sha256);
    return false;
  }
  if (s_.release_key) {
    // A device that pins a release key takes only signed images: otherwise whoever holds the
    // service's key could offer anything by leaving the signature out.
    if (!target_.image_sig) {
      fail(now, fx, "image_sig",
           "the manifest carries no image_sig, and a release key is pinned (kid " +
               s_.release_key->kid() + "): refusing an unsigned image");
      return false;
    }
    const auto sig = crypto::base64url_decode(*target_.image_sig);
    if (!sig || !s_.release_key->verify_digest(digest, *sig)) {
      fail(now, fx, "image_sig",
           "image_sig does not verify with the pinned release key (kid " + s_.release_key->kid() +
               ")");
      return false;
    }
  }
  return true;
}

void device::verified(const sim_time& now, effects& fx) {
  fx.notes.push_back({note::kind::downloaded, {}, since(now, download_started_at_)});
  status(fx, "verifying", target_.version, std::nullopt, {}, target_.rollout);
  status(fx, "installing", target_.version, std::nullopt, {}, target_.rollout);
  phase_ = phase::installing;
  deadline_ = now.mono + jittered(s_.install_time);
}

void device::install_done(const sim_time& now, effects& fx) {
  if (fate_ == fate::fail)
    return fail(now, fx, {}, "injected failure: writing " + target_.version + " to flash failed");
  phase_ = phase::rebooting;
  deadline_ = now.mono + jittered(s_.reboot_time);
}

void device::reboot_done(const sim_time& now, effects& fx) {
  if (fate_ == fate::roll_back) {
    // The old image reports, and keeps running: the next check says the old version.
    status(fx, "rolled_back", version_text_, std::nullopt,
           "injected failure: " + target_.version + " did not stay up after reboot; back on " +
               version_text_,
           target_.rollout);
    return rest(now);
  }
  if (auto v = protocol::parse_semver(target_.version)) version_ = std::move(*v);
  version_text_ = target_.version;
  status(fx, "success", version_text_, std::nullopt, {}, target_.rollout);
  fx.notes.push_back({note::kind::updated, {}, since(now, accepted_at_)});
  rest(now);
}

void device::fail(const sim_time& now, effects& fx, const std::string& code,
                  const std::string& why) {
  if (!code.empty()) fx.notes.push_back({note::kind::error, code});
  status(fx, "failed", target_.version, std::nullopt, why, target_.rollout);
  rest(now);
}

void device::status(effects& fx, std::string_view state, const std::string& version,
                    std::optional<int> progress, std::string_view error,
                    const std::string& rollout) {
  json body = {{"req", "s-" + std::to_string(++seq_)}, {"version", version}, {"state", state}};
  if (progress) body["progress"] = *progress;
  if (!error.empty()) body["error"] = cap_error(error);
  if (!rollout.empty()) body["rollout"] = rollout;
  fx.publish.push_back({status_topic_, body.dump()});
  fx.notes.push_back({note::kind::status, std::string(state)});
}

}  // namespace otter::sim
