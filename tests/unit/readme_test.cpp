// The README is part of the product: its configuration table must list every setting.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "config/config.hpp"

namespace {

std::string readme() {
  std::ifstream in(OTTER_SOURCE_DIR "/README.md");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(readme, configuration_table_lists_every_setting_with_its_flag_and_default) {
  const auto text = readme();
  ASSERT_FALSE(text.empty());
  for (const auto& o : otter::config::options()) {
    const std::string row_start = "| `" + o.env + "` | `" + o.flag;
    const auto at = text.find(row_start);
    ASSERT_NE(at, std::string::npos) << o.env << " is missing from the README's table";
    const auto row = text.substr(at, text.find('\n', at) - at);
    EXPECT_NE(row.find("| " + o.default_text + " |"), std::string::npos)
        << o.env << ": the README's default differs from the code's (" << o.default_text << ")";
  }
}

TEST(readme, quick_start_names_the_two_commands_that_exist) {
  const auto text = readme();
  EXPECT_NE(text.find("scripts/demo.sh"), std::string::npos);
  EXPECT_NE(text.find("scripts/test.sh"), std::string::npos);
  std::ifstream ci(OTTER_SOURCE_DIR "/.ci/run");
  std::ostringstream ss;
  ss << ci.rdbuf();
  EXPECT_NE(ss.str().find("scripts/test.sh"), std::string::npos)
      << "CI must run the README's test command";
}

}  // namespace
