#pragma once
// Store-internal helpers around libpqxx 6.4: sessions, error classes, row access, time.
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <string_view>

#include "store/records.hpp"

namespace otter::store::detail {

// The URL with connect_timeout added unless it sets one: a host that drops packets must not
// hold a thread (and stop()) for the kernel's TCP timeout.
std::string with_connect_timeout(const std::string& url, int seconds = 5);

// libpqxx 6 prints server notices on stderr by default; route them to spdlog instead.
class notice_logger final : public pqxx::errorhandler {
 public:
  explicit notice_logger(pqxx::connection_base& c) : pqxx::errorhandler(c) {}
  bool operator()(const char msg[]) noexcept override;
};

// A connection and its notice handler, created and destroyed together.
struct session {
  explicit session(const std::string& url);
  pqxx::connection conn;
  notice_logger notices{conn};
};

// SQLSTATE class 22 (data exception) or 23 (integrity constraint violation): the rows are at
// fault, not the database, so retrying them unchanged cannot help.
bool is_data_error(const pqxx::sql_error& e) noexcept;

// The first line of an error text, trimmed: libpq messages span lines ("\nIs the server
// running ...").
std::string first_line(std::string_view text);

// JSON for a jsonb parameter: invalid UTF-8 is replaced rather than thrown on.
std::string dump(const nlohmann::json& j);

time_point from_epoch_ms(std::int64_t ms);
std::int64_t epoch_ms(time_point t);  // for to_timestamp($n::bigint / 1000.0) parameters

std::optional<std::string> opt_string(const pqxx::field& f);
std::optional<std::int64_t> opt_int64(const pqxx::field& f);
nlohmann::json string_or_null(const pqxx::field& f);
// A timestamp column selected as epoch milliseconds (see the k* queries), as RFC 3339.
nlohmann::json time_or_null(const pqxx::field& f);
nlohmann::json parse_json(const pqxx::field& f);  // a jsonb column; null when NULL

}  // namespace otter::store::detail
