#include "mqtt/nodelay.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

namespace otter::mqtt::nodelay {
namespace {

// An incremental scan stops after this many consecutive free descriptor numbers.
constexpr int kFreeRunToStop = 16;

struct address {
  int family = 0;
  std::array<unsigned char, 16> bytes{};
  std::uint16_t port = 0;
  bool operator==(const address&) const = default;
};

// IPv4-mapped IPv6 peers compare equal to their IPv4 form.
std::optional<address> to_address(const sockaddr* sa) {
  address a;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    a.family = AF_INET;
    std::memcpy(a.bytes.data(), &in->sin_addr, 4);
    a.port = ntohs(in->sin_port);
    return a;
  }
  if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    a.port = ntohs(in6->sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      a.family = AF_INET;
      std::memcpy(a.bytes.data(), in6->sin6_addr.s6_addr + 12, 4);
    } else {
      a.family = AF_INET6;
      std::memcpy(a.bytes.data(), in6->sin6_addr.s6_addr, 16);
    }
    return a;
  }
  return std::nullopt;
}

struct broker {
  std::string host;
  std::uint16_t port = 0;
  std::vector<address> addresses;  // empty while the name does not resolve: match the port only
  bool resolved = false;
  int refs = 0;
};

struct endpoint {
  std::string host;
  std::uint16_t port = 0;
};

std::optional<endpoint> parse_uri(std::string_view uri) {
  std::string_view scheme = "tcp";
  if (auto pos = uri.find("://"); pos != std::string_view::npos) {
    scheme = uri.substr(0, pos);
    uri.remove_prefix(pos + 3);
  }
  std::uint16_t port = 1883;
  if (scheme == "ssl" || scheme == "mqtts" || scheme == "tls") port = 8883;
  if (scheme == "ws") port = 80;
  if (scheme == "wss") port = 443;
  if (scheme == "unix") return std::nullopt;
  uri = uri.substr(0, uri.find('/'));
  endpoint ep;
  std::string_view port_text;
  if (!uri.empty() && uri.front() == '[') {
    auto close = uri.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    ep.host = std::string(uri.substr(1, close - 1));
    if (close + 1 < uri.size() && uri[close + 1] == ':') port_text = uri.substr(close + 2);
  } else if (auto colon = uri.rfind(':'); colon != std::string_view::npos) {
    ep.host = std::string(uri.substr(0, colon));
    port_text = uri.substr(colon + 1);
  } else {
    ep.host = std::string(uri);
  }
  if (!port_text.empty()) {
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc{} || end != port_text.data() + port_text.size()) return std::nullopt;
  }
  if (ep.host.empty()) return std::nullopt;
  ep.port = port;
  return ep;
}

void resolve(broker& b) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(b.host.c_str(), nullptr, &hints, &res) != 0) return;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    if (auto a = to_address(ai->ai_addr)) {
      a->port = b.port;
      if (std::find(b.addresses.begin(), b.addresses.end(), *a) == b.addresses.end())
        b.addresses.push_back(*a);
    }
  }
  ::freeaddrinfo(res);
  b.resolved = !b.addresses.empty();
}

enum class kind { free, other, broker };

struct registry {
  std::mutex mu;
  std::map<std::string, broker, std::less<>> brokers;  // key "host|port"
  std::vector<bool> tuned;  // by descriptor: a broker socket we set TCP_NODELAY on
  bool dirty = true;        // first scan, or a broker connection closed since the last scan
  nodelay::stats counters;

  bool is_broker(const address& peer) const {
    for (const auto& [key, b] : brokers) {
      if (b.port != peer.port) continue;
      if (b.addresses.empty()) return true;
      if (std::find(b.addresses.begin(), b.addresses.end(), peer) != b.addresses.end()) return true;
    }
    return false;
  }

  // One getsockopt answers "free", "not TCP" and "already tuned"; getpeername only for TCP.
  kind examine(int fd, std::size_t& changed) {
    ++counters.probes;
    int on = 0;
    socklen_t len = sizeof on;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len) != 0)
      return errno == EBADF ? kind::free : kind::other;
    sockaddr_storage peer{};
    socklen_t plen = sizeof peer;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) != 0) return kind::other;
    auto a = to_address(reinterpret_cast<const sockaddr*>(&peer));
    if (!a || !is_broker(*a)) return kind::other;
    if (on == 0) {
      int one = 1;
      if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0) ++changed;
    }
    return kind::broker;
  }

  void set_tuned(int fd, bool value) {
    auto i = static_cast<std::size_t>(fd);
    if (i >= tuned.size()) {
      if (!value) return;
      tuned.resize(std::max<std::size_t>(i + 1, tuned.size() * 2));
    }
    tuned[i] = value;
  }

  bool is_tuned(int fd) const {
    auto i = static_cast<std::size_t>(fd);
    return i < tuned.size() && tuned[i];
  }

  void full_scan(std::size_t& changed) {
    std::vector<int> fds;
    if (DIR* dir = ::opendir("/proc/self/fd")) {
      const int own = ::dirfd(dir);
      while (dirent* e = ::readdir(dir)) {
        int fd = 0;
        const char* name = e->d_name;
        auto [end, ec] = std::from_chars(name, name + std::strlen(name), fd);
        if (ec == std::errc{} && *end == '\0' && fd != own) fds.push_back(fd);
      }
      ::closedir(dir);
    } else {
      // No /proc: probe every number below the descriptor limit, capped to stay affordable.
      rlimit lim{};
      rlim_t n = ::getrlimit(RLIMIT_NOFILE, &lim) == 0 ? lim.rlim_cur : 1024;
      n = std::min<rlim_t>(n, 65536);
      for (rlim_t fd = 0; fd < n; ++fd) fds.push_back(static_cast<int>(fd));
    }
    tuned.assign(tuned.size(), false);
    for (int fd : fds)
      if (examine(fd, changed) == kind::broker) set_tuned(fd, true);
    dirty = false;
    ++counters.full_scans;
  }

  // Skips what it tuned before and stops at the first long run of free numbers: a new socket
  // took the lowest free number when it was created, so it lies below such a run unless that
  // many descriptors under it were closed since (closed broker sockets force a full scan).
  void incremental_scan(std::size_t& changed) {
    int free_run = 0;
    for (int fd = 0; free_run < kFreeRunToStop; ++fd) {
      if (is_tuned(fd)) {
        free_run = 0;
        continue;
      }
      kind k = examine(fd, changed);
      if (k == kind::free) {
        ++free_run;
        continue;
      }
      free_run = 0;
      if (k == kind::broker) set_tuned(fd, true);
    }
    ++counters.incremental_scans;
  }
};

// Leaked on purpose: Paho threads may still report a connection during static destruction.
registry& reg() {
  static auto* r = new registry;
  return *r;
}

std::string key_of(const endpoint& ep) {
  return ep.host + "|" + std::to_string(ep.port);
}

}  // namespace

void add_broker(std::string_view server_uri) {
  auto ep = parse_uri(server_uri);
  if (!ep) return;
  auto& r = reg();
  std::lock_guard lock(r.mu);
  auto [it, inserted] = r.brokers.try_emplace(key_of(*ep));
  broker& b = it->second;
  if (inserted) {
    b.host = ep->host;
    b.port = ep->port;
    resolve(b);
    if (!b.resolved)
      spdlog::warn("mqtt: cannot resolve {} yet; TCP_NODELAY goes to every socket on port {}",
                   b.host, b.port);
  }
  ++b.refs;
}

void remove_broker(std::string_view server_uri) {
  auto ep = parse_uri(server_uri);
  if (!ep) return;
  auto& r = reg();
  std::lock_guard lock(r.mu);
  auto it = r.brokers.find(key_of(*ep));
  if (it != r.brokers.end() && --it->second.refs <= 0) r.brokers.erase(it);
}

std::size_t tune() {
  auto& r = reg();
  std::lock_guard lock(r.mu);
  if (r.brokers.empty()) return 0;
  for (auto& [key, b] : r.brokers)
    if (!b.resolved) resolve(b);
  std::size_t changed = 0;
  if (r.dirty)
    r.full_scan(changed);
  else
    r.incremental_scan(changed);
  r.counters.tuned += changed;
  return changed;
}

stats current_stats() {
  auto& r = reg();
  std::lock_guard lock(r.mu);
  return r.counters;
}

void forget_closed() {
  auto& r = reg();
  std::lock_guard lock(r.mu);
  r.dirty = true;
}

}  // namespace otter::mqtt::nodelay
