#pragma once
// Aligned text tables for people (the --json output is for scripts).
#include <string>
#include <string_view>
#include <vector>

namespace otter::ctl {

class table {
 public:
  explicit table(std::vector<std::string> headers);
  void add(std::vector<std::string> row);  // missing cells are empty, extra ones dropped
  bool empty() const noexcept { return rows_.empty(); }
  // Header and rows, columns separated by two spaces, trailing blanks trimmed.
  std::string str() const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// "2026-11-27T22:09:40.123Z" -> "2026-11-27 22:09:40"; anything else is returned as it is.
std::string short_time(std::string_view rfc3339);

// Display width of UTF-8 text: one column per code point (no East Asian wide handling).
std::size_t display_width(std::string_view s);

// Control characters (from the network) replaced by '?', so a table stays one line per row.
std::string printable(std::string_view s);

}  // namespace otter::ctl
