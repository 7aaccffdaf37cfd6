#pragma once
// The protocol parsers' refusal contract, as a gtest predicate: bad_request, and the message
// names the offending field in quotes (so that a device or an operator knows what to fix).
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "protocol/error.hpp"

namespace otter::test {

template <class T>
testing::AssertionResult refused(const result<T>& r, std::string_view field) {
  if (r.ok()) return testing::AssertionFailure() << "accepted";
  if (r.error().code != errc::bad_request)
    return testing::AssertionFailure() << "code is " << to_string(r.error().code);
  const std::string quoted = "\"" + std::string(field) + "\"";
  if (r.error().message.find(quoted) == std::string::npos)
    return testing::AssertionFailure()
           << "message \"" << r.error().message << "\" lacks " << quoted;
  return testing::AssertionSuccess() << r.error().message;
}

}  // namespace otter::test
