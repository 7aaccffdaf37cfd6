#pragma once
// Device messages of PROTOCOL.md: parsed and validated into typed values, never trusted raw.
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "protocol/error.hpp"
#include "protocol/semver.hpp"

namespace otter::protocol {

using attr_map = std::map<std::string, std::string>;

inline constexpr std::size_t kMaxMessageBytes = 16 * 1024;  // device and operator messages

// Payload -> JSON object. Errors (bad_request): larger than max_bytes, not UTF-8 / not JSON,
// not an object. The message says which.
result<nlohmann::json> parse_object(std::string_view payload,
                                    std::size_t max_bytes = kMaxMessageBytes);

// A copy with every U+0000 in keys and strings replaced by U+FFFD: PostgreSQL cannot store
// U+0000, and parts of a message that are recorded as they came (an operator's args, unknown
// fields included: PROTOCOL.md ignores those, so they cannot be refused) would make the whole
// record fail.
nlohmann::json without_nul(const nlohmann::json& j);

// The same for a payload parse_object refused (too large, malformed): the top-level string
// `key` if the parser read it before the problem, within the first 64 KiB. PROTOCOL.md: an
// error's `req` is "the offending message's where it could be read". No document is built.
std::optional<std::string> peek_string_unparsed(std::string_view payload, const char* key);

// A message as it goes on the wire. Text that reaches an answer is valid UTF-8 by construction
// (tests/fuzz checks it); should a bug let a bad byte through, it becomes U+FFFD instead of an
// exception that would leave the device or operator without an answer.
std::string to_wire(const nlohmann::json& message);

// The correlation field (e.g. "req" or "id") if present and a string of 1..64 characters,
// so that an error about an otherwise bad message can still name it.
std::optional<std::string> peek_string(const nlohmann::json& obj, const char* key);

struct check_msg {
  std::string req;    // 1..64 characters
  std::string model;  // valid_name
  std::string version_text;
  semver version;
  std::string nonce;              // 16..64 hex characters
  std::optional<attr_map> attrs;  // up to 16 pairs, key 1..32, value 0..128 characters
};
result<check_msg> parse_check(const nlohmann::json& obj);

enum class status_state {
  downloading,
  verifying,
  installing,
  success,
  failed,
  rejected,
  rolled_back
};
std::string_view to_string(status_state s) noexcept;
std::optional<status_state> status_state_from_string(std::string_view s) noexcept;

inline constexpr std::size_t kMaxStatusError = 256;  // characters

struct status_msg {
  std::optional<std::string> req;  // optional; 1..64 characters when present
  std::string version_text;        // required
  semver version;
  status_state state;                  // required
  std::optional<int> progress;         // 0..100
  std::optional<std::string> error;    // <= kMaxStatusError; failed/rejected/rolled_back need it
  std::optional<std::string> rollout;  // decimal id string, 1..20 digits
};
result<status_msg> parse_status(const nlohmann::json& obj);

struct chunk_request_msg {
  std::optional<std::string> req;
  std::string file;  // 16 hex characters
  std::uint64_t offset = 0;
  std::uint32_t len = 0;    // >= 1
  std::uint32_t count = 1;  // >= 1; optional, default 1
};
// Checks shape only; len/count against the configured maxima are the caller's (bad_request).
result<chunk_request_msg> parse_chunk_request(const nlohmann::json& obj);

}  // namespace otter::protocol
