// otterctl's option values: --since in its three forms.
#include "otterctl/args.hpp"

#include <gtest/gtest.h>

namespace otter::ctl {
namespace {

TEST(otterctl_since, unix_seconds_utc_times_and_ages) {
  const std::int64_t now = 1'800'000'000;
  EXPECT_EQ(parse_since("0", now).value(), 0);
  EXPECT_EQ(parse_since("1795000000", now).value(), 1'795'000'000);
  EXPECT_EQ(parse_since("2026-11-29T10:00:00Z", now).value(), 1'795'946'400);
  EXPECT_EQ(parse_since("1970-01-01T00:00:00Z", now).value(), 0);
  EXPECT_EQ(parse_since("45s", now).value(), now - 45);
  EXPECT_EQ(parse_since("30m", now).value(), now - 1800);
  EXPECT_EQ(parse_since("2h", now).value(), now - 7200);
  EXPECT_EQ(parse_since("7d", now).value(), now - 7 * 86400);
  EXPECT_EQ(parse_since("36500d", 1000).value(), 0);  // before 1970: from the start
}

TEST(otterctl_since, anything_else_is_refused_with_the_forms_it_takes) {
  for (const char* bad :
       {"", "-5", "yesterday", "2026-11-29", "2026-11-29T10:00:00", "2026-11-29T10:00:00+01:00",
        "2026-02-30T10:00:00Z", "2026-11-29T25:00:00Z", "5w", "h", "-3h", "1.5h", "99999999999d"}) {
    auto r = parse_since(bad, 1'800'000'000);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, errc::bad_request);
    EXPECT_NE(r.error().message.find("2026-11-29T10:00:00Z"), std::string::npos);
  }
}

}  // namespace
}  // namespace otter::ctl
