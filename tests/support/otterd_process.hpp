#pragma once
// Runs the real otterd binary as a child process, as an operator would, for integration tests.
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "support/child_process.hpp"

namespace otter::test {

class otterd_process {
 public:
  // env: the variables otterd gets (nothing else is inherited except PATH, HOME and the
  // sanitizer options). The log goes to a file in log_dir.
  otterd_process(std::map<std::string, std::string> env, std::filesystem::path log_dir,
                 std::vector<std::string> args = {});
  otterd_process(const otterd_process&) = delete;
  otterd_process& operator=(const otterd_process&) = delete;

  // Waits until the log says it serves and is connected to the broker.
  bool wait_ready(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  // SIGTERM (or sig), then waits; returns the exit status (or -1 on timeout, after SIGKILL).
  int stop(int sig = 15, std::chrono::milliseconds timeout = std::chrono::seconds(40));
  bool running() { return proc_.running(); }
  std::string log() const { return proc_.log_text(); }
  pid_t pid() const noexcept { return proc_.pid(); }

 private:
  child_process proc_;
};

}  // namespace otter::test
