#include "support/broker_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

#include "support/net.hpp"

extern char** environ;

namespace otter::test {
namespace {

std::runtime_error sys_error(const std::string& what) {
  return std::runtime_error(what + ": " + std::strerror(errno));
}

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

bool accepts_tcp(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr = loopback(port);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

broker_process::broker_process(broker_options options) : options_(std::move(options)) {
  port_ = options_.port;
  if (port_ == 0) {
    if (const char* env = std::getenv("OTTER_TEST_MQTT_PORT"); env != nullptr && *env != '\0')
      port_ = static_cast<std::uint16_t>(std::stoul(env));
    else
      port_ = free_port();
  }

  std::string tmpl = (std::filesystem::temp_directory_path() / "otter-mosquitto-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw sys_error("mkdtemp");
  dir_ = tmpl;
  // Run as root, mosquitto drops to user "mosquitto" and must still read its config.
  ::chmod(dir_.c_str(), 0755);
  {
    std::ofstream conf(dir_ / "mosquitto.conf");
    conf << "listener " << port_ << " 127.0.0.1\n"
         << "allow_anonymous true\n"
         << "persistence false\n"
         << "log_dest stderr\n"
         << "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
         << "set_tcp_nodelay " << (options_.tcp_nodelay ? "true" : "false") << "\n"
         << options_.extra_config << "\n";
    if (!conf) throw std::runtime_error("cannot write " + (dir_ / "mosquitto.conf").string());
  }
  ::chmod((dir_ / "mosquitto.conf").c_str(), 0644);
  start();
}

broker_process::~broker_process() {
  stop();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string broker_process::uri() const {
  return "tcp://127.0.0.1:" + std::to_string(port_);
}

std::string broker_process::log() const {
  std::ifstream in(dir_ / "mosquitto.log");
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void broker_process::start() {
  if (running()) return;
  const std::string conf = (dir_ / "mosquitto.conf").string();
  const std::string log_path = (dir_ / "mosquitto.log").string();

  // posix_spawn rather than fork: the test process runs Paho threads, and a forked copy of a
  // multithreaded process may only call async-signal-safe functions before exec.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);

  std::vector<std::string> args{options_.executable, "-c", conf};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t pid = -1;
  int rc =
      ::posix_spawn(&pid, options_.executable.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    errno = rc;
    throw sys_error("posix_spawn " + options_.executable);
  }
  pid_ = pid;

  const auto deadline = std::chrono::steady_clock::now() + options_.start_timeout;
  while (!accepts_tcp(port_)) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("mosquitto exited during start on port " + std::to_string(port_) +
                               ":\n" + log());
    }
    if (std::chrono::steady_clock::now() > deadline) {
      stop();
      throw std::runtime_error("mosquitto did not listen on port " + std::to_string(port_) +
                               " in time:\n" + log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void broker_process::stop() {
  if (!running()) return;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  int status = 0;
  while (::waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pid_ = -1;
}

void broker_process::restart() {
  stop();
  start();
}

}  // namespace otter::test
