// Every parser of network input in src/protocol, fed arbitrary bytes. The first byte picks the
// parser, the rest is the payload. Beyond "no crash, no sanitizer report" it checks what the
// service relies on after a parser returns: an error's message can be put in JSON (the service
// echoes it to the device or operator), a parsed value keeps its documented bounds.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "protocol/commands.hpp"
#include "protocol/error.hpp"
#include "protocol/fields.hpp"
#include "protocol/ids.hpp"
#include "protocol/messages.hpp"
#include "protocol/semver.hpp"
#include "protocol/target.hpp"
#include "protocol/topics.hpp"

namespace {

namespace p = otter::protocol;

// The service puts an error's message into a JSON answer; dump() throws on invalid UTF-8.
template <class T>
void check_result(const otter::result<T>& r) {
  if (r) return;
  OTTER_FUZZ_CHECK(p::valid_utf8(r.error().message));
  OTTER_FUZZ_CHECK(!r.error().message.empty());
  (void)nlohmann::json{{"message", r.error().message}}.dump();
}

void check_semver(std::string_view text) {
  auto v = p::parse_semver(text);
  if (!v) return;
  OTTER_FUZZ_CHECK(text.size() <= 128);
  OTTER_FUZZ_CHECK(p::compare(*v, *v) == 0);
  // The text round-trips, and the canonical form (no build metadata) parses to an equal version.
  OTTER_FUZZ_CHECK(v->text() == text);
  auto canon = p::parse_semver(v->canonical());
  OTTER_FUZZ_CHECK(canon && p::compare(*canon, *v) == 0 && canon->build.empty());
}

void fuzz_check_msg(const nlohmann::json& obj) {
  auto r = p::parse_check(obj);
  check_result(r);
  if (!r) return;
  OTTER_FUZZ_CHECK(!r->req.empty() && p::detail::utf8_length(r->req) <= 64);
  OTTER_FUZZ_CHECK(p::valid_name(r->model));
  OTTER_FUZZ_CHECK(p::valid_hex(r->nonce, 16, 64));
  OTTER_FUZZ_CHECK(p::parse_semver(r->version_text).has_value());
  if (r->attrs) OTTER_FUZZ_CHECK(r->attrs->size() <= 16);
}

void fuzz_status_msg(const nlohmann::json& obj) {
  auto r = p::parse_status(obj);
  check_result(r);
  if (!r) return;
  if (r->progress) OTTER_FUZZ_CHECK(*r->progress >= 0 && *r->progress <= 100);
  if (r->error) OTTER_FUZZ_CHECK(p::detail::utf8_length(*r->error) <= 256);
  const bool needs_error = r->state == p::status_state::failed ||
                           r->state == p::status_state::rejected ||
                           r->state == p::status_state::rolled_back;
  if (needs_error) OTTER_FUZZ_CHECK(r->error.has_value());
  if (r->rollout) OTTER_FUZZ_CHECK(p::detail::all_digits(*r->rollout, 1, 20));
}

void fuzz_chunk_msg(const nlohmann::json& obj) {
  auto r = p::parse_chunk_request(obj);
  check_result(r);
  if (!r) return;
  OTTER_FUZZ_CHECK(p::valid_hex(r->file, 16, 16));
  OTTER_FUZZ_CHECK(r->len >= 1 && r->count >= 1);
}

void fuzz_admin(const nlohmann::json& obj) {
  auto r = p::parse_admin_request(obj);
  check_result(r);
  if (!r) return;
  OTTER_FUZZ_CHECK(r->args.is_object());
  // Every command's argument parser, whatever the command named, as a confused operator might.
  const auto& a = r->args;
  check_result(p::parse_release_add(a));
  check_result(p::parse_release_get(a));
  check_result(p::parse_release_list(a));
  auto create = p::parse_rollout_create(a);
  check_result(create);
  if (create) (void)create->tgt.to_json().dump();
  check_result(p::parse_rollout_ref(a));
  auto update = p::parse_rollout_update(a);
  check_result(update);
  if (update && update->basis_points) OTTER_FUZZ_CHECK(*update->basis_points <= 10000);
  check_result(p::parse_rollout_list(a));
  check_result(p::parse_device_list(a));
  check_result(p::parse_device_get(a));
  check_result(p::parse_status_list(a));
  check_result(p::parse_events_list(a));
}

void fuzz_target(const nlohmann::json& obj) {
  auto r = p::parse_target(obj);
  check_result(r);
  if (!r) return;
  if (r->type == p::target::kind::percent) OTTER_FUZZ_CHECK(r->basis_points <= 10000);
  // What the store writes back must parse to the same target.
  auto again = p::parse_target(r->to_json());
  OTTER_FUZZ_CHECK(again && again->type == r->type && again->basis_points == r->basis_points &&
                   again->ids == r->ids && again->attrs == r->attrs);
}

void fuzz_topic(std::string_view topic) {
  static const p::topics topics("ota/v1");
  auto t = topics.parse(topic);
  if (!t) return;
  if (t->subject_valid) OTTER_FUZZ_CHECK(p::valid_name(t->subject));
  if (t->upload_id_valid) OTTER_FUZZ_CHECK(t->kind == p::topic_kind::admin_upload);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const char which = static_cast<char>(data[0]);
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (which == 't') {
    fuzz_topic(rest);
    return 0;
  }
  if (which == 'v') {
    check_semver(rest);
    return 0;
  }
  auto obj = p::parse_object(rest, 4096);
  check_result(obj);
  if (!obj) {
    OTTER_FUZZ_CHECK(obj.error().code == otter::errc::bad_request);
    // The req echoed for a refused payload is as usable as a parsed one's.
    if (auto req = p::peek_string_unparsed(rest, "req"))
      OTTER_FUZZ_CHECK(!req->empty() && p::detail::utf8_length(*req) <= 64 && p::valid_utf8(*req));
    return 0;
  }
  OTTER_FUZZ_CHECK(rest.size() <= 4096 && obj->is_object());
  switch (which) {
    case 'c':
      fuzz_check_msg(*obj);
      break;
    case 's':
      fuzz_status_msg(*obj);
      break;
    case 'k':
      fuzz_chunk_msg(*obj);
      break;
    case 'a':
      fuzz_admin(*obj);
      break;
    case 'g':
      fuzz_target(*obj);
      break;
    default:  // any other first byte: every parser, so that mutations of the selector still test
      fuzz_check_msg(*obj);
      fuzz_status_msg(*obj);
      fuzz_chunk_msg(*obj);
      fuzz_admin(*obj);
      fuzz_target(*obj);
  }
  return 0;
}
