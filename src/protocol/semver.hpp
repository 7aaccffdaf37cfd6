#pragma once
// Semantic Versioning 2.0.0: versions are compared by precedence, build metadata ignored.
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace otter::protocol {

struct semver {
  std::uint64_t major = 0;
  std::uint64_t minor = 0;
  std::uint64_t patch = 0;
  std::vector<std::string> prerelease;  // dot-separated identifiers, in order
  std::string build;                    // without the '+'; ignored by comparison

  // "1.2.3-rc.1": the identity of a release (build metadata dropped).
  std::string canonical() const;
  // The text as parsed, build metadata included.
  std::string text() const;
};

// Strict semver.org grammar; nullopt for anything else ("v1.0.0", "1.0", "01.0.0", "1.0.0-", ...).
// Longer than 128 characters is refused too.
std::optional<semver> parse_semver(std::string_view text);

// Precedence per semver.org section 11 (build metadata ignored).
std::strong_ordering compare(const semver& a, const semver& b) noexcept;
inline bool operator==(const semver& a, const semver& b) noexcept {
  return compare(a, b) == 0;
}
inline std::strong_ordering operator<=>(const semver& a, const semver& b) noexcept {
  return compare(a, b);
}

}  // namespace otter::protocol
