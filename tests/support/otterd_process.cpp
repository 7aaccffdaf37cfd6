#include "support/otterd_process.hpp"

namespace otter::test {
namespace {

std::vector<std::string> otterd_argv(std::vector<std::string> args) {
  args.insert(args.begin(), OTTERD_PATH);
  return args;
}

std::filesystem::path next_log(const std::filesystem::path& dir) {
  static int counter = 0;
  return dir / ("otterd-" + std::to_string(++counter) + ".log");
}

}  // namespace

otterd_process::otterd_process(std::map<std::string, std::string> env,
                               std::filesystem::path log_dir, std::vector<std::string> args)
    : proc_(otterd_argv(std::move(args)), env, next_log(log_dir)) {}

bool otterd_process::wait_ready(std::chrono::milliseconds timeout) {
  return proc_.wait_for_log({"decision=serving", "decision=mqtt_connected"}, timeout);
}

int otterd_process::stop(int sig, std::chrono::milliseconds timeout) {
  return proc_.stop(sig, timeout);
}

}  // namespace otter::test
