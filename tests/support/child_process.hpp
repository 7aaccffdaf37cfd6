#pragma once
// A child process of a test or of the bench (otterd, otterctl, nginx, the no-op responder):
// started with an explicit environment, its output in a log file, stopped by signal. Every child
// is ended when its object goes, so an aborted run leaves nothing behind. Needs no gtest, so the
// bench links it too (library otter_testkit).
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace otter::test {

class child_process {
 public:
  // argv[0] is a path (or a name looked up in PATH). The child gets `env` and, from ours, only
  // PATH, HOME and the sanitizer options. stdout and stderr go to `log`.
  child_process(std::vector<std::string> argv, const std::map<std::string, std::string>& env,
                std::filesystem::path log);
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  // Waits until every `needle` is in the log; false on timeout or if the child exited.
  bool wait_for_log(const std::vector<std::string>& needles, std::chrono::milliseconds timeout);
  // Sends `sig`, waits up to `timeout`, then SIGKILL. Returns the exit status (128+signal when
  // killed by one), -1 if it had to be killed.
  int stop(int sig = 15, std::chrono::milliseconds timeout = std::chrono::seconds(20));
  bool running();
  std::string log_text() const;
  // The last `lines` lines of the log, for error messages.
  std::string log_tail(std::size_t lines = 20) const;
  const std::filesystem::path& log_path() const { return log_; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int exit_status_ = -1;
  std::filesystem::path log_;
};

// Runs a command to completion: exit status and combined output.
struct run_result {
  int status = -1;
  std::string output;
};
run_result run_command(const std::vector<std::string>& argv,
                       const std::map<std::string, std::string>& env = {});

}  // namespace otter::test
