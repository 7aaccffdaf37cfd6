#pragma once
// HTTP image download (PROTOCOL.md `url` claim) and /healthz, on httplib's own thread pool.
//   GET/HEAD /v1/images/<sha256>?d=&exp=&t=  -> 200 / 206 / 403 / 404 / 416
//   GET /healthz                              -> 200 or 503 with {"mqtt": bool, "db": bool}
// The file is named only by path_of(validated sha256); it is opened before the token is
// checked, so that an unknown image is 404 whatever the link (README). Bodies are streamed by
// pread.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "http/link_signer.hpp"

namespace httplib {
class Server;
}

namespace otter::http {

// One `Range: bytes=...` header against a file of `size` bytes.
struct byte_range {
  enum class kind { none, single, unsatisfiable };
  kind k = kind::none;  // none: serve the whole file with 200
  std::uint64_t first = 0;
  std::uint64_t last = 0;  // inclusive
};
// Single ranges "a-b", "a-", "-n" are honoured (b is clamped to the end). A multi-range request
// is ignored (whole file, 200), as RFC 9110 allows, rather than answered with multipart.
// Syntax errors are also ignored; unsatisfiable single ranges give kind::unsatisfiable.
byte_range parse_byte_range(std::string_view header, std::uint64_t size);

struct server_deps {
  const link_signer& links;
  std::function<std::filesystem::path(const std::string& sha256)> path_of;
  std::function<std::pair<bool, bool>()> health;  // {mqtt up, database up}
  std::function<std::int64_t()> now;              // unix seconds
};

class server {
 public:
  server(server_deps deps, std::string host, std::uint16_t port);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Binds (throws std::runtime_error naming the address when it cannot) and serves in a thread.
  void start();
  void stop();

 private:
  void routes();

  server_deps d_;
  std::string host_;
  std::uint16_t port_;
  std::unique_ptr<httplib::Server> svr_;
  std::thread thread_;
};

}  // namespace otter::http
