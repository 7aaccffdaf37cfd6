#include "protocol/fields.hpp"

#include <cmath>
#include <limits>

#include "protocol/ids.hpp"
#include "protocol/semver.hpp"

namespace otter::protocol::detail {
namespace {

std::string in_quotes(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  out += s;
  out += '"';
  return out;
}

std::string chars_rule(std::size_t min_chars, std::size_t max_chars) {
  if (min_chars == 0)
    return "must be a string of at most " + std::to_string(max_chars) + " characters";
  if (min_chars == max_chars)
    return "must be a string of exactly " + std::to_string(min_chars) + " characters";
  return "must be a string of " + std::to_string(min_chars) + " to " + std::to_string(max_chars) +
         " characters";
}

std::optional<std::uint64_t> json_uint(const json& v) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer()) {
    const auto i = v.get<std::int64_t>();
    if (i >= 0) return static_cast<std::uint64_t>(i);
  }
  return std::nullopt;
}

}  // namespace

std::size_t utf8_length(std::string_view s) noexcept {
  std::size_t n = 0;
  for (const char c : s)
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  return n;
}

error field_error(std::string_view field, std::string_view rule) {
  std::string msg = in_quotes(field);
  msg += ' ';
  msg += rule;
  return make_error(errc::bad_request, std::move(msg));
}

error missing_field(std::string_view field) {
  return field_error(field, "is required");
}

error not_an_object(std::string_view what) {
  return field_error(what, "must be a JSON object");
}

result<std::string> read_string(const json& v, std::string_view name, std::size_t min_chars,
                                std::size_t max_chars) {
  if (!v.is_string()) return field_error(name, chars_rule(min_chars, max_chars));
  const auto& s = v.get_ref<const std::string&>();
  // Parsed payloads are always UTF-8; values built in code may not be, and they reach
  // the database and other JSON documents.
  if (!valid_utf8(s)) return field_error(name, "must be valid UTF-8");
  // PostgreSQL text cannot hold U+0000.
  if (s.find('\0') != std::string::npos)
    return field_error(name, "must not contain NUL characters");
  const auto n = utf8_length(s);
  if (n < min_chars || n > max_chars) return field_error(name, chars_rule(min_chars, max_chars));
  return s;
}

result<std::string> read_name(const json& v, std::string_view name) {
  if (!v.is_string() || !valid_name(v.get_ref<const std::string&>()))
    return field_error(name, "must be 1 to 64 characters of [A-Za-z0-9_.-]");
  return v.get<std::string>();
}

result<std::string> read_hex(const json& v, std::string_view name, std::size_t min_len,
                             std::size_t max_len) {
  if (!v.is_string() || !valid_hex(v.get_ref<const std::string&>(), min_len, max_len)) {
    if (min_len == max_len)
      return field_error(name, "must be exactly " + std::to_string(min_len) + " hex characters");
    return field_error(name, "must be " + std::to_string(min_len) + " to " +
                                 std::to_string(max_len) + " hex characters");
  }
  return v.get<std::string>();
}

result<std::string> read_sha256(const json& v, std::string_view name) {
  if (!v.is_string() || !valid_sha256_hex(v.get_ref<const std::string&>()))
    return field_error(name, "must be 64 lowercase hex characters (a SHA-256)");
  return v.get<std::string>();
}

result<version_arg> read_version(const json& v, std::string_view name) {
  std::optional<semver> parsed;
  if (v.is_string()) parsed = parse_semver(v.get_ref<const std::string&>());
  if (!parsed)
    return field_error(name,
                       "must be a semantic version (semver 2.0.0, e.g. 1.2.3 or 1.2.3-rc.1) of at "
                       "most 128 characters");
  return version_arg{v.get<std::string>(), std::move(*parsed)};
}

result<std::uint64_t> read_uint(const json& v, std::string_view name, std::uint64_t min,
                                std::uint64_t max) {
  const auto u = json_uint(v);
  if (!u || *u < min || *u > max) {
    const bool unbounded =
        max == std::numeric_limits<std::uint64_t>::max() ||
        max == static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    if (unbounded) return field_error(name, "must be an integer >= " + std::to_string(min));
    return field_error(
        name, "must be an integer from " + std::to_string(min) + " to " + std::to_string(max));
  }
  return *u;
}

result<bool> read_bool(const json& v, std::string_view name) {
  if (!v.is_boolean()) return field_error(name, "must be true or false");
  return v.get<bool>();
}

result<std::uint32_t> read_percent(const json& v, std::string_view name) {
  const auto refuse = [&] {
    return field_error(name, "must be a number from 0 to 100 with at most two decimals");
  };
  if (!v.is_number()) return refuse();
  const double p = v.get<double>();
  if (!std::isfinite(p) || p < 0.0 || p > 100.0) return refuse();
  // 12.34 is not exact in binary: allow the representation error, refuse a third decimal.
  const double scaled = p * 100.0;
  const double rounded = std::round(scaled);
  if (std::fabs(scaled - rounded) > 1e-6) return refuse();
  return static_cast<std::uint32_t>(rounded);
}

result<attr_map> read_attrs(const json& v, std::string_view name, std::size_t min_pairs,
                            std::size_t max_pairs) {
  const std::string pairs = min_pairs == 0
                                ? "up to " + std::to_string(max_pairs)
                                : std::to_string(min_pairs) + " to " + std::to_string(max_pairs);
  if (!v.is_object()) return field_error(name, "must be an object of " + pairs + " string pairs");
  if (v.size() < min_pairs || v.size() > max_pairs)
    return field_error(name, "has " + std::to_string(v.size()) + " pairs; it must have " + pairs);
  attr_map out;
  for (const auto& [key, value] : v.items()) {
    if (!valid_utf8(key) || key.find('\0') != std::string::npos || key.empty() ||
        utf8_length(key) > 32)
      return field_error(name, "keys must be 1 to 32 characters");
    if (!value.is_string() || !valid_utf8(value.get_ref<const std::string&>()) ||
        value.get_ref<const std::string&>().find('\0') != std::string::npos ||
        utf8_length(value.get_ref<const std::string&>()) > 128)
      return field_error(
          name, "value for " + in_quotes(key) + " must be a string of at most 128 characters");
    out.emplace(key, value.get<std::string>());
  }
  return out;
}

bool all_digits(std::string_view s, std::size_t min_digits, std::size_t max_digits) noexcept {
  if (s.size() < min_digits || s.size() > max_digits) return false;
  for (const char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

}  // namespace otter::protocol::detail
