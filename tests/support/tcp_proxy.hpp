#pragma once
// A TCP proxy in front of the test PostgreSQL server, to take it away and bring it back without
// touching the shared cluster. Down: every connection is cut and new ones are closed at once.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <pqxx/pqxx>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace otter::test {

class tcp_proxy {
 public:
  explicit tcp_proxy(const std::string& admin_url) {
    pqxx::connection c{admin_url};
    upstream_host_ = c.hostname() ? c.hostname() : "";
    upstream_port_ = c.port() ? c.port() : "5432";
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_fd_, 64) != 0)
      throw std::runtime_error("proxy: cannot listen");
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~tcp_proxy() {
    stop_ = true;
    set_up(false);
    acceptor_.join();
    for (auto& t : pumps_) t.join();
    ::close(listen_fd_);
  }

  int port() const { return port_; }

  // The next COMMIT a client sends is passed on and then its connection cut before the answer
  // (forward = true: the commit happens, the client cannot know), or the connection is cut
  // instead of passing it on (forward = false: the transaction is aborted).
  void cut_next_commit(bool forward) { cut_commit_ = forward ? 1 : 2; }

  void set_up(bool up) {
    up_ = up;
    if (up) return;
    std::lock_guard lock(mu_);
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);  // the pump threads close them
  }

 private:
  int connect_upstream() const {
    if (upstream_host_.empty() || upstream_host_[0] == '/') {
      const auto path =
          (upstream_host_.empty() ? std::string{"/var/run/postgresql"} : upstream_host_) +
          "/.s.PGSQL." + upstream_port_;
      const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un a{};
      a.sun_family = AF_UNIX;
      std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
      if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        return -1;
      }
      return fd;
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (::getaddrinfo(upstream_host_.c_str(), upstream_port_.c_str(), &hints, &res) != 0) return -1;
    int fd = -1;
    for (auto* ai = res; ai != nullptr && fd < 0; ai = ai->ai_next) {
      fd = ::socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
      if (fd >= 0 && ::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        ::close(fd);
        fd = -1;
      }
    }
    ::freeaddrinfo(res);
    return fd;
  }

  void accept_loop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int client = ::accept(listen_fd_, nullptr, nullptr);
      if (client < 0) continue;
      if (!up_ || stop_) {
        ::close(client);
        continue;
      }
      const int server = connect_upstream();
      if (server < 0) {
        ::close(client);
        continue;
      }
      std::lock_guard lock(mu_);
      fds_.insert(client);
      fds_.insert(server);
      pumps_.emplace_back([this, client, server] { pump(client, server); });
    }
  }

  void pump(int a, int b) {
    char buf[16384];
    for (;;) {
      pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
      if (::poll(p, 2, 100) < 0) break;
      if (stop_) break;
      bool done = false;
      for (int i = 0; i < 2 && !done; ++i) {
        if (p[i].revents == 0) continue;
        const int from = p[i].fd, to = i == 0 ? b : a;
        const auto n = ::recv(from, buf, sizeof buf, 0);
        if (n <= 0) {
          done = true;
          break;
        }
        int cut = 0;
        if (i == 0 && cut_commit_ != 0 &&
            std::string_view(buf, static_cast<std::size_t>(n)).find("COMMIT") !=
                std::string_view::npos)
          cut = cut_commit_.exchange(0);
        if (cut == 2) {
          done = true;
          break;
        }
        if (cut == 1) done = true;  // after passing this on
        for (ssize_t off = 0; off < n;) {
          const auto w = ::send(to, buf + off, static_cast<std::size_t>(n - off), MSG_NOSIGNAL);
          if (w <= 0) {
            done = true;
            break;
          }
          off += w;
        }
      }
      if (done) break;
    }
    {
      std::lock_guard lock(mu_);
      fds_.erase(a);
      fds_.erase(b);
      ::shutdown(a, SHUT_RDWR);
      ::shutdown(b, SHUT_RDWR);
    }
    ::close(a);
    ::close(b);
  }

  std::string upstream_host_;
  std::string upstream_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<int> cut_commit_{0};
  std::atomic<bool> up_{true};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::set<int> fds_;
  std::vector<std::thread> pumps_;
  std::thread acceptor_;
};

}  // namespace otter::test
