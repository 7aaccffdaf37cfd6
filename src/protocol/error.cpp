#include "protocol/error.hpp"

#include <array>

namespace otter {
namespace {
constexpr std::array<std::pair<errc, std::string_view>, 9> kNames{{
    {errc::bad_request, "bad_request"},
    {errc::forbidden, "forbidden"},
    {errc::not_found, "not_found"},
    {errc::range, "range"},
    {errc::rate_limited, "rate_limited"},
    {errc::unavailable, "unavailable"},
    {errc::internal, "internal"},
    {errc::unauthorized, "unauthorized"},
    {errc::conflict, "conflict"},
}};
}  // namespace

std::string_view to_string(errc code) noexcept {
  for (const auto& [c, name] : kNames)
    if (c == code) return name;
  return "internal";
}

std::optional<errc> errc_from_string(std::string_view name) noexcept {
  for (const auto& [c, n] : kNames)
    if (n == name) return c;
  return std::nullopt;
}

}  // namespace otter
