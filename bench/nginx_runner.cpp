#include "nginx_runner.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace otter::bench {
namespace {

bool port_answers(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// Started as root, nginx's workers run as nobody: everything they read must be world-readable
// and every folder on the way traversable.
void open_up(const std::filesystem::path& p, bool dir) {
  using std::filesystem::perms;
  std::filesystem::permissions(
      p, dir ? perms::owner_all | perms::group_read | perms::group_exec | perms::others_read |
                   perms::others_exec
             : perms::owner_read | perms::owner_write | perms::group_read | perms::others_read);
}

}  // namespace

std::string nginx_binary() {
  if (::access("/usr/sbin/nginx", X_OK) == 0) return "/usr/sbin/nginx";
  if (const char* path = std::getenv("PATH")) {
    std::stringstream ss(path);
    for (std::string d; std::getline(ss, d, ':');)
      if (::access((d + "/nginx").c_str(), X_OK) == 0) return d + "/nginx";
  }
  return {};
}

nginx_runner::nginx_runner(nginx_settings s) : s_(std::move(s)) {
  std::filesystem::create_directories(s_.dir / "www");
  std::filesystem::create_directories(s_.dir / "temp");
  open_up(s_.dir, true);
  open_up(s_.dir / "www", true);
}

nginx_runner::~nginx_runner() {
  if (proc_) proc_->stop(SIGQUIT, std::chrono::seconds(10));
}

std::string nginx_runner::publish(const std::filesystem::path& file) {
  const auto dest = s_.dir / "www" / "image.bin";
  std::filesystem::copy_file(file, dest, std::filesystem::copy_options::overwrite_existing);
  open_up(dest, false);
  return "/image.bin";
}

void nginx_runner::start() {
  const auto bin = nginx_binary();
  if (bin.empty())
    throw std::runtime_error(
        "nginx not found (apt-get install nginx-light; scripts/bench.sh does)");
  if (port_answers(s_.port))
    throw std::runtime_error("127.0.0.1:" + std::to_string(s_.port) +
                             " is already in use; choose another with --nginx-port");
  const auto d = s_.dir.string();
  std::ofstream conf(s_.dir / "nginx.conf");
  // Debian's nginx.conf where it matters for a static file (sendfile, tcp_nopush, access log),
  // minus what a loopback benchmark does not need (gzip, TLS, includes).
  conf << "daemon off;\n"
       << "worker_processes " << s_.workers << ";\n"
       << "pid " << d << "/nginx.pid;\n"
       << "error_log " << d << "/nginx-error.log warn;\n"
       << "events { worker_connections 1024; }\n"
       << "http {\n"
       << "  access_log " << d << "/nginx-access.log;\n"
       << "  sendfile " << (s_.sendfile ? "on" : "off") << ";\n"
       << "  tcp_nopush on;\n"
       << "  keepalive_requests 1000;\n"
       << "  default_type application/octet-stream;\n"
       << "  client_body_temp_path " << d << "/temp/body;\n"
       << "  proxy_temp_path " << d << "/temp/proxy;\n"
       << "  fastcgi_temp_path " << d << "/temp/fastcgi;\n"
       << "  uwsgi_temp_path " << d << "/temp/uwsgi;\n"
       << "  scgi_temp_path " << d << "/temp/scgi;\n"
       << "  server {\n"
       << "    listen 127.0.0.1:" << s_.port << ";\n"
       << "    root " << d << "/www;\n"
       << "    location / { }\n"
       << "  }\n"
       << "}\n";
  conf.close();
  if (!conf) throw std::runtime_error("cannot write " + d + "/nginx.conf");
  proc_ = std::make_unique<child_process>(
      std::vector<std::string>{bin, "-p", d, "-e", d + "/nginx-error.log", "-c", d + "/nginx.conf"},
      std::map<std::string, std::string>{}, s_.dir / "nginx.out");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!port_answers(s_.port)) {
    if (!proc_->running() || std::chrono::steady_clock::now() > deadline) {
      std::ifstream err(s_.dir / "nginx-error.log");
      std::stringstream ss;
      ss << err.rdbuf();
      proc_->stop(SIGKILL, std::chrono::seconds(2));
      proc_.reset();
      throw std::runtime_error("nginx did not start:\n" + ss.str());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void nginx_runner::stop() {
  if (!proc_) return;
  proc_->stop(SIGQUIT, std::chrono::seconds(10));  // graceful shutdown
  proc_.reset();
}

}  // namespace otter::bench
