// The device core (firmware-examples/core) parses everything a device receives with its own C
// code: JSON, the offer and its JWS manifest, error messages, topics, chunks. A device cannot be
// patched as easily as the service, so this target checks it against independent oracles:
// nlohmann/json for the JSON reader, and a byte-exact image for the chunked download.
// The first byte picks the surface, the rest is the input.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/ec_key.hpp"
#include "crypto/hash.hpp"
#include "fuzz_check.hpp"
#include "otter_core.h"

namespace {

using otter::crypto::ec_key;

constexpr const char* kDevice = "esp32-fuzz01";
constexpr const char* kModel = "esp32-devkitc";

const ec_key& manifest_key() {
  static const ec_key key = ec_key::generate();
  return key;
}

const otter_pubkey& manifest_pub() {
  static const otter_pubkey pub = [] {
    otter_pubkey p{};
    const auto pem = manifest_key().public_pem();
    OTTER_FUZZ_CHECK(otter_pubkey_from_pem(pem.data(), pem.size(), &p) == OTTER_OK);
    return p;
  }();
  return pub;
}

int counter_random(void* ctx, std::uint8_t* out, std::size_t n) {
  auto* c = static_cast<std::uint8_t*>(ctx);
  for (std::size_t i = 0; i < n; ++i) out[i] = (*c)++;
  return 0;
}

struct device {
  std::uint8_t counter = 0;
  otter_device dev{};
  std::string req, nonce;

  device() {
    otter_config cfg{};
    cfg.device_id = kDevice;
    cfg.model = kModel;
    cfg.version = "1.0.0";
    cfg.manifest_keys = &manifest_pub();
    cfg.manifest_key_count = 1;
    cfg.chunk_len_max = 4096;
    cfg.window_max = 16;
    cfg.random = counter_random;
    cfg.random_ctx = &counter;
    OTTER_FUZZ_CHECK(otter_init(&dev, &cfg) == OTTER_OK);
    char buf[1024];
    std::size_t len = 0;
    OTTER_FUZZ_CHECK(otter_build_check(&dev, buf, sizeof buf, &len) == OTTER_OK);
    OTTER_FUZZ_CHECK(len < sizeof buf && buf[len] == '\0');
    const auto check = nlohmann::json::parse(std::string_view(buf, len));
    req = check.at("req");
    nonce = check.at("nonce");
  }

  otter_err offer(std::string_view payload, otter_manifest* out = nullptr) {
    std::vector<char> scratch(2 * payload.size() + 1);  // what otter_core.h says is enough
    return otter_handle_offer(&dev, payload.data(), payload.size(), scratch.data(), scratch.size(),
                              0, out);
  }
};

std::string b64(std::string_view s) {
  return otter::crypto::base64url_encode(s);
}

// A compact JWS over the claims text exactly as given (it need not be valid JSON). The last
// few are remembered: inputs repeat (every fresh device sends the same nonce), signing costs.
std::string sign_raw(std::string_view claims) {
  static std::map<std::string, std::string, std::less<>> memo;
  if (auto it = memo.find(claims); it != memo.end()) return it->second;
  const nlohmann::ordered_json header = {
      {"alg", "ES256"}, {"typ", "otter-manifest"}, {"kid", manifest_key().kid()}};
  const std::string input = b64(header.dump()) + "." + b64(claims);
  const auto sig = manifest_key().sign(input);
  std::string jws =
      input + "." + otter::crypto::base64url_encode(std::span<const std::uint8_t>(sig));
  if (memo.size() >= 4096) memo.clear();
  memo.emplace(claims, jws);
  return jws;
}

std::string offer_payload(const std::string& req, bool update, const std::string& jws) {
  return nlohmann::json{{"req", req}, {"update", update}, {"manifest", jws}}.dump();
}

std::size_t depth_of(const nlohmann::json& j) {
  std::size_t d = 0;
  if (j.is_structured())
    for (const auto& v : j) d = std::max(d, depth_of(v));
  return j.is_structured() ? d + 1 : 0;
}

// The C JSON reader against nlohmann/json: the same documents accepted (within the nesting
// limit), the same strings and integers read.
void fuzz_json(std::string_view doc) {
  otter_json v{};
  const bool c_ok = otter_json_parse(doc.data(), doc.size(), &v) == OTTER_OK;
  nlohmann::json ref;
  bool ref_ok = true;
  try {
    ref = nlohmann::json::parse(doc);
  } catch (const nlohmann::json::exception&) {
    ref_ok = false;
  }
  if (c_ok) OTTER_FUZZ_CHECK(ref_ok);
  // nlohmann stops reading at a NUL byte (the service refuses such payloads before parsing).
  const bool has_nul = doc.find('\0') != std::string_view::npos;
  if (ref_ok && !has_nul && depth_of(ref) <= OTTER_JSON_MAX_DEPTH) OTTER_FUZZ_CHECK(c_ok);
  if (!c_ok || !ref_ok) return;
  OTTER_FUZZ_CHECK(otter_json_is_object(v) == (ref.is_object() ? 1 : 0));
  auto same_scalar = [](otter_json cv, const nlohmann::json& rv) {
    char out[256];
    std::size_t len = 0;
    const otter_err s = otter_json_string(cv, out, sizeof out, &len);
    if (rv.is_string()) {
      const auto& text = rv.get_ref<const std::string&>();
      if (text.size() < sizeof out && text.find('\0') == std::string::npos) {
        OTTER_FUZZ_CHECK(s == OTTER_OK);
        OTTER_FUZZ_CHECK(std::string_view(out, len) == text && out[len] == '\0');
      } else {
        OTTER_FUZZ_CHECK(s != OTTER_OK);
      }
    } else {
      OTTER_FUZZ_CHECK(s != OTTER_OK);
    }
    std::uint64_t u = 0;
    if (otter_json_u64(cv, &u) == OTTER_OK)
      OTTER_FUZZ_CHECK(rv.is_number_unsigned() && rv.get<std::uint64_t>() == u);
    std::int64_t i = 0;
    if (otter_json_i64(cv, &i) == OTTER_OK)
      OTTER_FUZZ_CHECK(rv.is_number_integer() && rv.get<std::int64_t>() == i);
    int b = 0;
    if (otter_json_bool(cv, &b) == OTTER_OK)
      OTTER_FUZZ_CHECK(rv.is_boolean() && rv.get<bool>() == (b != 0));
  };
  same_scalar(v, ref);
  if (!ref.is_object()) return;
  for (const auto& [key, value] : ref.items()) {
    if (key.size() > 64 || key.find('\0') != std::string::npos) continue;
    otter_json m{};
    // nlohmann keeps the last of duplicate keys; the C reader refuses them, never guesses.
    const otter_err rc = otter_json_member(v, key.c_str(), &m);
    if (rc == OTTER_E_JSON) continue;
    OTTER_FUZZ_CHECK(rc == OTTER_OK);
    same_scalar(m, value);
  }
}

// A raw offer payload, as anyone able to publish on the device's topic could send.
void fuzz_offer(std::string_view payload) {
  device d;
  otter_manifest m{};
  const otter_err rc = d.offer(payload, &m);
  // Without the pinned key's signature no manifest can be accepted.
  OTTER_FUZZ_CHECK(rc != OTTER_OK);
  OTTER_FUZZ_CHECK(!d.dev.dl.active);
  char req[65], code[33], msg[257];
  (void)otter_parse_error(payload.data(), payload.size(), req, sizeof req, code, sizeof code, msg,
                          sizeof msg);
}

// Claims signed with the pinned key: the checks after the signature (sub, nonce, model, version,
// download claims) on whatever a compromised or buggy service could sign.
void fuzz_signed_claims(std::string_view claims) {
  for (bool update : {true, false}) {
    device fresh;
    // "@nonce@" stands for the nonce of the device's check, which a seed cannot know.
    std::string text(claims);
    for (auto at = text.find("@nonce@"); at != std::string::npos; at = text.find("@nonce@", at))
      text.replace(at, 7, fresh.nonce);
    otter_manifest m{};
    const otter_err rc = fresh.offer(offer_payload(fresh.req, update, sign_raw(text)), &m);
    if (rc != OTTER_OK) continue;
    // Accepted: the claims must have been a JSON object naming this device and its nonce.
    const auto j = nlohmann::json::parse(text);
    OTTER_FUZZ_CHECK(j.is_object() && j.value("sub", "") == kDevice &&
                     j.value("nonce", "") == fresh.nonce);
    OTTER_FUZZ_CHECK(m.update == (update ? 1 : 0));
    if (m.update) {
      OTTER_FUZZ_CHECK(std::string_view(m.model) == kModel);
      OTTER_FUZZ_CHECK(m.chunk_max >= 1 && m.chunk_window >= 1);
      OTTER_FUZZ_CHECK(fresh.dev.dl.active && fresh.dev.dl.next == 0);
      char buf[512];
      std::size_t len = 0;
      if (m.size > 0 && otter_build_chunk_request(&fresh.dev, buf, sizeof buf, &len) == OTTER_OK) {
        const auto r = nlohmann::json::parse(std::string_view(buf, len));
        OTTER_FUZZ_CHECK(r.at("len").get<std::uint64_t>() <= 4096);
        OTTER_FUZZ_CHECK(r.at("count").get<std::uint64_t>() <= 16);
      }
    }
  }
}

// A download driven by the input: true slices of the image, corrupted slices, requests,
// in any order. The device must never finish with an image it did not fully receive intact.
void fuzz_download(std::string_view ops) {
  if (ops.size() < 2) return;
  const std::size_t size =
      1 + (static_cast<std::uint8_t>(ops[0]) << 8 | static_cast<std::uint8_t>(ops[1]));
  ops.remove_prefix(2);
  std::string image(size, '\0');
  for (std::size_t i = 0; i < size; ++i) image[i] = static_cast<char>(i * 31 + 7);
  const std::string hex = otter::crypto::sha256_hex(image);

  device d;
  const nlohmann::ordered_json claims = {
      {"sub", kDevice},    {"update", true},
      {"model", kModel},   {"version", "1.1.0"},
      {"from", "1.0.0"},   {"size", size},
      {"sha256", hex},     {"nonce", d.nonce},
      {"iat", 1795000000}, {"exp", 1795003600},
      {"rollout", "17"},   {"chunk", {{"file", hex.substr(0, 16)}, {"max", 512}, {"window", 4}}}};
  const otter_err accepted = d.offer(offer_payload(d.req, true, sign_raw(claims.dump())));
  if (accepted != OTTER_OK) std::fprintf(stderr, "offer refused: %s\n", otter_err_name(accepted));
  OTTER_FUZZ_CHECK(accepted == OTTER_OK);

  bool corrupt_accepted = false;
  std::uint64_t last_offset = 0;
  while (ops.size() >= 4 && !otter_download_complete(&d.dev)) {
    const auto op = static_cast<std::uint8_t>(ops[0]);
    const std::uint64_t offset =
        (static_cast<std::uint8_t>(ops[1]) << 8 | static_cast<std::uint8_t>(ops[2])) % (size + 1);
    const std::size_t len = 1 + static_cast<std::uint8_t>(ops[3]) * 32u;
    ops.remove_prefix(4);
    const std::uint64_t next = otter_download_offset(&d.dev);
    if (op % 4 == 0) {
      char buf[256];
      std::size_t n = 0;
      const std::size_t cap = 16 + op % 240;  // small buffers too: never an overflow
      const otter_err rc = otter_build_chunk_request(&d.dev, buf, cap, &n);
      if (rc == OTTER_OK) {
        OTTER_FUZZ_CHECK(n < cap);
        const auto r = nlohmann::json::parse(std::string_view(buf, n));
        OTTER_FUZZ_CHECK(r.at("offset").get<std::uint64_t>() == next);
      }
      continue;
    }
    // Mostly at the resume offset, so that downloads progress; sometimes anywhere.
    const std::uint64_t at = op % 4 == 3 ? offset : next;
    if (at >= size) {
      OTTER_FUZZ_CHECK(otter_chunk_receive(&d.dev, at, reinterpret_cast<const std::uint8_t*>(""),
                                           1) == OTTER_E_BEYOND_SIZE);
      continue;
    }
    const std::size_t n = std::min<std::uint64_t>(len, size - at);
    std::string chunk = image.substr(at, n);
    const bool corrupt = op % 8 == 7;
    if (corrupt) chunk[op % n] = static_cast<char>(chunk[op % n] ^ (1 + op % 255));
    const otter_err rc = otter_chunk_receive(
        &d.dev, at, reinterpret_cast<const std::uint8_t*>(chunk.data()), chunk.size());
    if (rc == OTTER_OK) {
      OTTER_FUZZ_CHECK(at == next && n <= 4096);
      if (corrupt) corrupt_accepted = true;
    }
    const std::uint64_t now = otter_download_offset(&d.dev);
    OTTER_FUZZ_CHECK(now >= last_offset && now <= size);
    OTTER_FUZZ_CHECK(now == (rc == OTTER_OK ? next + n : next));
    const int progress = otter_download_progress(&d.dev);
    OTTER_FUZZ_CHECK(progress >= 0 && progress <= 100);
    last_offset = now;
  }
  if (!otter_download_complete(&d.dev)) {
    OTTER_FUZZ_CHECK(otter_download_finish(&d.dev) == OTTER_E_INCOMPLETE);
    return;
  }
  const otter_err rc = otter_download_finish(&d.dev);
  OTTER_FUZZ_CHECK(corrupt_accepted ? rc == OTTER_E_SHA256 : rc == OTTER_OK);
}

void fuzz_error(std::string_view payload) {
  // Tiny buffers: every output must stay NUL-terminated inside its buffer.
  char req[4], code[3], msg[5];
  std::memset(req, 'x', sizeof req);
  std::memset(code, 'x', sizeof code);
  std::memset(msg, 'x', sizeof msg);
  if (otter_parse_error(payload.data(), payload.size(), req, sizeof req, code, sizeof code, msg,
                        sizeof msg) == OTTER_OK) {
    OTTER_FUZZ_CHECK(std::memchr(req, '\0', sizeof req) && std::memchr(code, '\0', sizeof code) &&
                     std::memchr(msg, '\0', sizeof msg));
  }
}

void fuzz_topic(std::string_view topic) {
  device d;
  otter_down_kind kind{};
  std::uint64_t offset = 0;
  const otter_err rc = otter_classify_topic(&d.dev, topic.data(), topic.size(), &kind, &offset);
  if (rc != OTTER_OK) return;
  // Only this device's down topics.
  const std::string own = std::string("ota/v1/dev/") + kDevice + "/down/";
  OTTER_FUZZ_CHECK(topic.substr(0, own.size()) == own);
  OTTER_FUZZ_CHECK(kind != OTTER_DOWN_CHUNK);  // no download in progress: no chunk file matches
}

void fuzz_semver(std::string_view text) {
  const auto nl = text.find('\n');
  const std::string a(text.substr(0, nl));
  const std::string b(nl == std::string_view::npos ? "1.0.0" : text.substr(nl + 1));
  if (a.find('\0') != std::string::npos || b.find('\0') != std::string::npos) return;
  int ab = 0, ba = 0;
  const otter_err r1 = otter_semver_compare(a.c_str(), b.c_str(), &ab);
  const otter_err r2 = otter_semver_compare(b.c_str(), a.c_str(), &ba);
  OTTER_FUZZ_CHECK(r1 == r2);
  if (r1 == OTTER_OK) {
    OTTER_FUZZ_CHECK((ab < 0) == (ba > 0) && (ab == 0) == (ba == 0));
    OTTER_FUZZ_CHECK(otter_same_release(a.c_str(), b.c_str()) == (ab == 0 ? 1 : 0));
    OTTER_FUZZ_CHECK(otter_semver_valid(a.c_str(), a.size()) == OTTER_OK);
  }
}

void fuzz_base64url(std::string_view in) {
  std::array<std::uint8_t, 96> out{};
  std::size_t n = 0;
  if (otter_base64url_decode(in.data(), in.size(), out.data(), out.size(), &n) != OTTER_OK) return;
  OTTER_FUZZ_CHECK(n <= out.size() && n == in.size() * 3 / 4);
  // Decoding is the inverse of the encoder the service uses.
  OTTER_FUZZ_CHECK(otter::crypto::base64url_encode(std::span<const std::uint8_t>(out.data(), n)) ==
                   in);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0 || size > 8192) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (static_cast<char>(data[0])) {
    case 'j':
      fuzz_json(rest);
      break;
    case 'o':
      fuzz_offer(rest);
      break;
    case 'm':
      fuzz_signed_claims(rest);
      break;
    case 'd':
      fuzz_download(rest);
      break;
    case 'e':
      fuzz_error(rest);
      break;
    case 't':
      fuzz_topic(rest);
      break;
    case 'v':
      fuzz_semver(rest);
      break;
    case 'b':
      fuzz_base64url(rest);
      break;
    default:
      fuzz_json(rest);
  }
  return 0;
}
