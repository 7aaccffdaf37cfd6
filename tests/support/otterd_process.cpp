#include "support/otterd_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace otter::test {
namespace {

std::vector<std::string> child_env(const std::map<std::string, std::string>& env) {
  std::vector<std::string> out;
  for (const char* keep : {"PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "HOME"})
    if (const char* v = std::getenv(keep)) out.push_back(std::string(keep) + "=" + v);
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env, int out_fd) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
  posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
  std::vector<char*> av, ev;
  for (const auto& a : argv) av.push_back(const_cast<char*>(a.c_str()));
  av.push_back(nullptr);
  for (const auto& e : env) ev.push_back(const_cast<char*>(e.c_str()));
  ev.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, av[0], &fa, nullptr, av.data(), ev.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("cannot start " + argv[0]);
  return pid;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

otterd_process::otterd_process(std::map<std::string, std::string> env,
                               std::filesystem::path log_dir, std::vector<std::string> args) {
  static int counter = 0;
  log_path_ = log_dir / ("otterd-" + std::to_string(++counter) + ".log");
  int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot open " + log_path_.string());
  std::vector<std::string> argv{OTTERD_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_ = spawn(argv, child_env(env), fd);
  ::close(fd);
}

otterd_process::~otterd_process() {
  if (pid_ > 0 && running()) stop(SIGKILL, std::chrono::seconds(5));
}

bool otterd_process::wait_ready(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    const auto text = log();
    if (text.find("decision=serving") != std::string::npos &&
        text.find("decision=mqtt_connected") != std::string::npos)
      return true;
    if (!running()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

bool otterd_process::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    pid_ = -1;
    return false;
  }
  return r == 0;
}

int otterd_process::stop(int sig, std::chrono::milliseconds timeout) {
  if (!running()) return exit_status_;
  ::kill(pid_, sig);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!running()) return exit_status_;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return -1;
}

std::string otterd_process::log() const {
  return slurp(log_path_);
}

run_result run_command(const std::vector<std::string>& argv,
                       const std::map<std::string, std::string>& env) {
  char tmpl[] = "/tmp/otter-run-XXXXXX";
  int fd = ::mkstemp(tmpl);
  if (fd < 0) throw std::runtime_error("mkstemp failed");
  pid_t pid = spawn(argv, child_env(env), fd);
  ::close(fd);
  int status = 0;
  ::waitpid(pid, &status, 0);
  run_result r;
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.output = slurp(tmpl);
  ::unlink(tmpl);
  return r;
}

}  // namespace otter::test
