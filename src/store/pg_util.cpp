#include "store/pg_util.hpp"

#include <spdlog/spdlog.h>

namespace otter::store::detail {

std::string with_connect_timeout(const std::string& url, int seconds) {
  if (url.find("connect_timeout") != std::string::npos) return url;
  const auto value = std::to_string(seconds);
  if (url.find("://") != std::string::npos) {
    // URI form: add a query parameter (before any fragment; libpq ignores none).
    return url + (url.find('?') == std::string::npos ? "?" : "&") + "connect_timeout=" + value;
  }
  // key=value form (possibly empty: all defaults).
  return url + (url.empty() ? "" : " ") + "connect_timeout=" + value;
}

bool notice_logger::operator()(const char msg[]) noexcept {
  try {
    std::string_view text = msg ? std::string_view{msg} : std::string_view{};
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
    if (text.starts_with("WARNING"))
      spdlog::warn("postgres: {}", text);
    else
      spdlog::debug("postgres: {}", text);
  } catch (...) {
    // Logging must never throw into libpq's notice callback.
  }
  return false;  // handled: do not pass on to libpqxx's stderr printer
}

session::session(const std::string& url) : conn(with_connect_timeout(url)) {}

bool is_data_error(const pqxx::sql_error& e) noexcept {
  const std::string& state = e.sqlstate();
  return state.size() == 5 && (state.starts_with("22") || state.starts_with("23"));
}

std::string first_line(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\n')) text.remove_prefix(1);
  const auto nl = text.find('\n');
  if (nl != std::string_view::npos) text = text.substr(0, nl);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\r')) text.remove_suffix(1);
  return std::string{text};
}

std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

time_point from_epoch_ms(std::int64_t ms) {
  return time_point{
      std::chrono::duration_cast<time_point::duration>(std::chrono::milliseconds{ms})};
}

std::int64_t epoch_ms(time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::optional<std::string> opt_string(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<std::string>();
}

std::optional<std::int64_t> opt_int64(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<std::int64_t>();
}

nlohmann::json string_or_null(const pqxx::field& f) {
  if (f.is_null()) return nullptr;
  return f.as<std::string>();
}

nlohmann::json time_or_null(const pqxx::field& f) {
  if (f.is_null()) return nullptr;
  return to_rfc3339(from_epoch_ms(f.as<std::int64_t>()));
}

nlohmann::json parse_json(const pqxx::field& f) {
  if (f.is_null()) return nullptr;
  return nlohmann::json::parse(f.c_str());
}

}  // namespace otter::store::detail
