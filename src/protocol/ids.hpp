#pragma once
// Names that reach topics or the database are checked here, once, by the protocol's rules.
#include <cstddef>
#include <string>
#include <string_view>

namespace otter::protocol {

inline constexpr std::size_t kMaxPayloadBytes = 16 * 1024;

// Device id, operator name, model, upload id: 1 to 64 characters of [A-Za-z0-9_.-].
bool valid_name(std::string_view s) noexcept;
// Lowercase or uppercase hex digits only, length within [min_len, max_len].
bool valid_hex(std::string_view s, std::size_t min_len, std::size_t max_len) noexcept;
// A lowercase hex SHA-256 (64 characters).
bool valid_sha256_hex(std::string_view s) noexcept;
// Well-formed UTF-8 (no overlongs, no surrogates).
bool valid_utf8(std::string_view s) noexcept;
// s with every byte that is not part of well-formed UTF-8 written as the text \xNN, for
// messages that quote network input (JSON cannot carry the raw bytes).
std::string escape_invalid_utf8(std::string_view s);

}  // namespace otter::protocol
