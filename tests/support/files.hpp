#pragma once
// Files and shell commands for tests that compare otter with the openssl command line or read
// the shared vectors. Shared by the unit and the integration tests.
#include <filesystem>
#include <string>
#include <string_view>

namespace otter::test {

// Throws when the file cannot be opened: a missing vector or example must fail the test loudly.
std::string read_file(const std::filesystem::path& p);
void write_file(const std::filesystem::path& p, std::string_view data);

// A private directory (mkdtemp, 0700), removed with everything in it on destruction.
class temp_dir {
 public:
  explicit temp_dir(std::string_view prefix = "otter-test");
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// A path as one single-quoted shell word (test paths have no quotes in them).
std::string quote(const std::filesystem::path& p);

// Runs `cmd` with /bin/sh; returns its exit status and leaves stdout+stderr in `out`.
int run_shell(const std::string& cmd, const temp_dir& dir, std::string& out);

}  // namespace otter::test
