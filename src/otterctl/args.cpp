#include "otterctl/args.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <ctime>

namespace otter::ctl {

std::optional<std::string> parsed_args::get(const std::string& name) const {
  auto it = values.find(name);
  if (it == values.end()) return std::nullopt;
  return it->second;
}

result<parsed_args> parse_args(const std::vector<std::string>& tokens,
                               const std::vector<option>& options) {
  parsed_args out;
  auto find = [&](std::string_view name) -> const option* {
    for (const auto& o : options)
      if (o.name == name) return &o;
    return nullptr;
  };
  bool options_done = false;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    if (options_done || t.size() < 2 || t[0] != '-' || t == "-") {
      out.positional.push_back(t);
      continue;
    }
    if (t == "--") {
      options_done = true;
      continue;
    }
    if (t == "-h") {
      out.values["help"] = "";
      continue;
    }
    if (t.rfind("--", 0) != 0)
      return make_error(errc::bad_request, "unknown option " + t + " (options start with --)");
    std::string name = t.substr(2);
    std::optional<std::string> value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    const option* o = find(name);
    if (!o) return make_error(errc::bad_request, "unknown option --" + name);
    if (out.has(name)) return make_error(errc::bad_request, "--" + name + " is given twice");
    if (o->metavar.empty()) {
      if (value) return make_error(errc::bad_request, "--" + name + " takes no value");
      out.values[name] = "";
      continue;
    }
    if (!value) {
      // A following flag is not a value: "--model --version 1" is a missing model.
      if (i + 1 >= tokens.size() || tokens[i + 1].rfind("--", 0) == 0)
        return make_error(errc::bad_request,
                          "--" + name + " needs a value (--" + name + " " + o->metavar + ")");
      value = tokens[++i];
    }
    out.values[name] = *value;
  }
  return out;
}

std::string options_help(const std::vector<option>& options) {
  std::size_t width = 0;
  std::vector<std::string> lefts;
  for (const auto& o : options) {
    std::string left = "--" + o.name + (o.metavar.empty() ? "" : " " + o.metavar);
    width = std::max(width, left.size());
    lefts.push_back(std::move(left));
  }
  std::string out;
  for (std::size_t i = 0; i < options.size(); ++i) {
    out += "  " + lefts[i] + std::string(width - lefts[i].size() + 3, ' ') + options[i].help + "\n";
  }
  return out;
}

std::optional<long long> parse_int(std::string_view s) {
  long long v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<double> parse_number(std::string_view s) {
  // from_chars for double is in libstdc++ 11+, but strtod keeps it portable; require the
  // whole string to be consumed and the value finite.
  if (s.empty() || s.size() > 64) return std::nullopt;
  std::string text(s);
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

result<std::int64_t> parse_since(std::string_view s, std::int64_t now) {
  const auto bad = [] {
    return make_error(
        errc::bad_request,
        "not unix seconds, a UTC time (2026-11-29T10:00:00Z) or an age (30m, 2h, 7d)");
  };
  if (s.empty() || s.size() > 32) return bad();
  if (auto n = parse_int(s)) {
    if (*n < 0) return bad();
    return static_cast<std::int64_t>(*n);
  }
  const char unit = s.back();
  if (unit == 's' || unit == 'm' || unit == 'h' || unit == 'd') {
    const auto n = parse_int(s.substr(0, s.size() - 1));
    const std::int64_t per = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : 86400;
    if (!n || *n < 0 || *n > 100LL * 365 * 86400 / per) return bad();
    return std::max<std::int64_t>(0, now - *n * per);
  }
  // YYYY-MM-DDTHH:MM:SSZ, checked by formatting the parsed time back.
  if (s.size() != 20) return bad();
  std::tm tm{};
  const std::string text(s);
  if (!::strptime(text.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm)) return bad();
  const std::time_t t = ::timegm(&tm);
  std::tm back{};
  char again[32];
  if (t < 0 || !::gmtime_r(&t, &back) ||
      std::strftime(again, sizeof again, "%Y-%m-%dT%H:%M:%SZ", &back) != 20 || text != again)
    return bad();
  return static_cast<std::int64_t>(t);
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    auto end = s.find(sep, start);
    if (end == std::string_view::npos) end = s.size();
    if (end > start) out.emplace_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace otter::ctl
