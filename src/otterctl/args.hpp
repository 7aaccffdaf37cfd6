#pragma once
// A small command-line parser for otterctl: "--name value", "--name=value", boolean flags,
// positional arguments, and the help text of an option table.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/error.hpp"

namespace otter::ctl {

struct option {
  std::string name;     // without the leading "--"
  std::string metavar;  // empty: a boolean flag
  std::string help;
};

struct parsed_args {
  std::map<std::string, std::string> values;  // flag name -> value ("" for a boolean flag)
  std::vector<std::string> positional;

  bool has(const std::string& name) const { return values.count(name) != 0; }
  std::optional<std::string> get(const std::string& name) const;
};

// Tokens exclude the program and command words. "-h" means "--help". A value that starts with
// "--" needs the "--name=value" form; "--" ends the options. An unknown flag, a flag given
// twice or a missing value is bad_request with a message that names the flag.
result<parsed_args> parse_args(const std::vector<std::string>& tokens,
                               const std::vector<option>& options);

// One aligned line per option: "  --name METAVAR   help".
std::string options_help(const std::vector<option>& options);

// --since: unix seconds, a UTC time "2026-11-29T10:00:00Z", or an age before `now` ("45s",
// "30m", "2h", "7d"). bad_request with what is accepted otherwise.
result<std::int64_t> parse_since(std::string_view s, std::int64_t now);

// Strict decimal parsers for option values; nullopt on anything else.
std::optional<long long> parse_int(std::string_view s);
std::optional<double> parse_number(std::string_view s);

// "a,b,c" -> {"a","b","c"}; empty items are dropped.
std::vector<std::string> split(std::string_view s, char sep);

}  // namespace otter::ctl
