#include "protocol/semver.hpp"

#include <algorithm>
#include <charconv>

namespace otter::protocol {
namespace {

constexpr std::size_t kMaxSemverLength = 128;

bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

bool is_ident_char(char c) noexcept {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

bool is_numeric(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (const char c : s)
    if (!is_digit(c)) return false;
  return true;
}

// Non-empty, [0-9A-Za-z-] only.
bool is_identifier(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (const char c : s)
    if (!is_ident_char(c)) return false;
  return true;
}

// "0" or [1-9][0-9]*, within uint64.
std::optional<std::uint64_t> parse_number(std::string_view s) noexcept {
  if (!is_numeric(s) || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// Splits on '.', keeping empty parts so that "1..2" is seen as malformed.
std::vector<std::string_view> split_dots(std::string_view s) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  for (;;) {
    const auto dot = s.find('.', start);
    if (dot == std::string_view::npos) {
      parts.push_back(s.substr(start));
      return parts;
    }
    parts.push_back(s.substr(start, dot - start));
    start = dot + 1;
  }
}

std::string_view strip_leading_zeros(std::string_view s) noexcept {
  while (s.size() > 1 && s.front() == '0') s.remove_prefix(1);
  return s;
}

std::strong_ordering compare_identifiers(std::string_view a, std::string_view b) noexcept {
  const bool a_num = is_numeric(a);
  const bool b_num = is_numeric(b);
  if (a_num && b_num) {
    // Any length: equal-length digit strings order like their values.
    a = strip_leading_zeros(a);
    b = strip_leading_zeros(b);
    if (a.size() != b.size()) return a.size() <=> b.size();
    return a <=> b;
  }
  if (a_num) return std::strong_ordering::less;
  if (b_num) return std::strong_ordering::greater;
  return a <=> b;  // ASCII order
}

}  // namespace

std::string semver::canonical() const {
  std::string out =
      std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
  for (std::size_t i = 0; i < prerelease.size(); ++i) {
    out += i == 0 ? '-' : '.';
    out += prerelease[i];
  }
  return out;
}

std::string semver::text() const {
  std::string out = canonical();
  if (!build.empty()) {
    out += '+';
    out += build;
  }
  return out;
}

std::optional<semver> parse_semver(std::string_view text) {
  if (text.empty() || text.size() > kMaxSemverLength) return std::nullopt;
  semver v;

  std::string_view rest = text;
  if (const auto plus = rest.find('+'); plus != std::string_view::npos) {
    const std::string_view build = rest.substr(plus + 1);
    for (const auto id : split_dots(build))
      if (!is_identifier(id)) return std::nullopt;  // also refuses an empty build ("1.0.0+")
    v.build = std::string(build);
    rest = rest.substr(0, plus);
  }

  // The core has no '-', so the first one starts the prerelease (which may contain more).
  if (const auto dash = rest.find('-'); dash != std::string_view::npos) {
    for (const auto id : split_dots(rest.substr(dash + 1))) {
      if (!is_identifier(id)) return std::nullopt;
      if (is_numeric(id) && !parse_number(id)) return std::nullopt;  // leading zero or overflow
      v.prerelease.emplace_back(id);
    }
    rest = rest.substr(0, dash);
  }

  const auto core = split_dots(rest);
  if (core.size() != 3) return std::nullopt;
  const auto major = parse_number(core[0]);
  const auto minor = parse_number(core[1]);
  const auto patch = parse_number(core[2]);
  if (!major || !minor || !patch) return std::nullopt;
  v.major = *major;
  v.minor = *minor;
  v.patch = *patch;
  return v;
}

std::strong_ordering compare(const semver& a, const semver& b) noexcept {
  if (a.major != b.major) return a.major <=> b.major;
  if (a.minor != b.minor) return a.minor <=> b.minor;
  if (a.patch != b.patch) return a.patch <=> b.patch;
  // A release is higher than any of its prereleases.
  if (a.prerelease.empty() && b.prerelease.empty()) return std::strong_ordering::equal;
  if (a.prerelease.empty()) return std::strong_ordering::greater;
  if (b.prerelease.empty()) return std::strong_ordering::less;
  const std::size_t n = std::min(a.prerelease.size(), b.prerelease.size());
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = compare_identifiers(a.prerelease[i], b.prerelease[i]);
    if (c != 0) return c;
  }
  return a.prerelease.size() <=> b.prerelease.size();
}

}  // namespace otter::protocol
