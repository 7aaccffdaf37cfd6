#pragma once
// Internal to src/protocol (not part of its API): the field readers shared by messages, targets
// and commands, so that every refusal is a bad_request worded the same way and naming its field.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "protocol/commands.hpp"
#include "protocol/error.hpp"
#include "protocol/messages.hpp"

namespace otter::protocol::detail {

using json = nlohmann::json;

// Characters (code points) of well-formed UTF-8: the protocol's lengths are in characters.
std::size_t utf8_length(std::string_view s) noexcept;

// bad_request "\"<field>\" <rule>".
error field_error(std::string_view field, std::string_view rule);
error missing_field(std::string_view field);
error not_an_object(std::string_view what);  // "\"<what>\" must be a JSON object"

// Readers take the field's value and its name (for the message).
result<std::string> read_string(const json& v, std::string_view name, std::size_t min_chars,
                                std::size_t max_chars);
result<std::string> read_name(const json& v, std::string_view name);
result<std::string> read_hex(const json& v, std::string_view name, std::size_t min_len,
                             std::size_t max_len);
result<std::string> read_sha256(const json& v, std::string_view name);
result<version_arg> read_version(const json& v, std::string_view name);
// A JSON integer (never a float, never a boolean) within [min, max].
result<std::uint64_t> read_uint(const json& v, std::string_view name, std::uint64_t min,
                                std::uint64_t max);
result<bool> read_bool(const json& v, std::string_view name);
// "percent": 0..100 with at most two decimals, as basis points.
result<std::uint32_t> read_percent(const json& v, std::string_view name);
// A string->string object: min_pairs..max_pairs, key 1..32, value 0..128 characters.
result<attr_map> read_attrs(const json& v, std::string_view name, std::size_t min_pairs,
                            std::size_t max_pairs);
// A string of min_digits..max_digits decimal digits.
bool all_digits(std::string_view s, std::size_t min_digits, std::size_t max_digits) noexcept;

inline auto string_reader(std::size_t min_chars, std::size_t max_chars) {
  return [=](const json& v, std::string_view name) {
    return read_string(v, name, min_chars, max_chars);
  };
}
inline auto hex_reader(std::size_t min_len, std::size_t max_len) {
  return [=](const json& v, std::string_view name) { return read_hex(v, name, min_len, max_len); };
}
inline auto uint_reader(std::uint64_t min, std::uint64_t max) {
  return [=](const json& v, std::string_view name) { return read_uint(v, name, min, max); };
}
inline auto attrs_reader(std::size_t min_pairs, std::size_t max_pairs) {
  return [=](const json& v, std::string_view name) {
    return read_attrs(v, name, min_pairs, max_pairs);
  };
}

// Reads fields of one object in turn and keeps the first refusal, so that a parser reads like
// the table it implements instead of a ladder of early returns.
class field_reader {
 public:
  explicit field_reader(const json& obj) : obj_(obj) {}

  template <class F>
  auto required(const char* name, F&& read) {
    using T = value_of<F>;
    if (err_) return T{};
    const auto it = obj_.find(name);
    if (it == obj_.end()) {
      err_ = missing_field(name);
      return T{};
    }
    return take(std::forward<F>(read)(*it, std::string_view{name}));
  }

  template <class F>
  auto optional(const char* name, F&& read) {
    using T = value_of<F>;
    if (err_) return std::optional<T>{};
    const auto it = obj_.find(name);
    if (it == obj_.end()) return std::optional<T>{};
    auto r = std::forward<F>(read)(*it, std::string_view{name});
    if (!r) {
      err_ = std::move(r).error();
      return std::optional<T>{};
    }
    return std::optional<T>{std::move(r).value()};
  }

  void fail(error e) {
    if (!err_) err_ = std::move(e);
  }
  bool ok() const noexcept { return !err_.has_value(); }
  error take_error() { return std::move(*err_); }

 private:
  template <class F>
  using value_of = std::remove_cvref_t<
      decltype(std::declval<std::invoke_result_t<F&, const json&, std::string_view>&>().value())>;

  template <class T>
  T take(result<T> r) {
    if (!r) {
      err_ = std::move(r).error();
      return T{};
    }
    return std::move(r).value();
  }

  const json& obj_;
  std::optional<error> err_;
};

}  // namespace otter::protocol::detail
