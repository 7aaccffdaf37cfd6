#pragma once
// Expected failures travel as values; the codes and their names are part of the wire contract.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace otter {

enum class errc {
  bad_request,
  forbidden,
  not_found,
  range,
  rate_limited,
  unavailable,
  internal,
  unauthorized,
  conflict,
};

// The stable wire name of a code, e.g. "bad_request".
std::string_view to_string(errc code) noexcept;
std::optional<errc> errc_from_string(std::string_view name) noexcept;

struct error {
  errc code;
  std::string message;
};

inline error make_error(errc code, std::string message) {
  return error{code, std::move(message)};
}

template <class T>
class [[nodiscard]] result {
 public:
  result(T value) : v_(std::move(value)) {}         // NOLINT(google-explicit-constructor)
  result(otter::error err) : v_(std::move(err)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const otter::error& error() const& { return std::get<1>(v_); }
  otter::error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, otter::error> v_;
};

template <>
class [[nodiscard]] result<void> {
 public:
  result() = default;
  result(otter::error err) : err_(std::move(err)) {}  // NOLINT(google-explicit-constructor)
  bool ok() const noexcept { return !err_.has_value(); }
  explicit operator bool() const noexcept { return ok(); }
  const otter::error& error() const& { return *err_; }

 private:
  std::optional<otter::error> err_;
};

}  // namespace otter
