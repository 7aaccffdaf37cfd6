#include "http/server.hpp"

#include <fcntl.h>
#include <httplib.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <vector>

#include "protocol/ids.hpp"

namespace otter::http {
namespace {

// Bytes read (pread) and handed to the socket per step, per connection in flight. 512 KiB
// halved the CPU per MB against 64 KiB in the benchmark (bench/, README "Performance").
constexpr std::size_t kReadChunk = 512 * 1024;
// Downloads take no request body: a larger one gets 413, unread.
constexpr std::size_t kMaxRequestBody = 1024;

// Request values reach the log: keep them short and printable.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 80)) {
    const auto u = static_cast<unsigned char>(c);
    out.push_back(u >= 0x21 && u < 0x7f && c != '"' ? c : '?');
  }
  return out;
}

bool parse_u64(std::string_view s, std::uint64_t& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Owns the image's descriptor for as long as httplib keeps the content provider.
struct open_file {
  int fd = -1;
  explicit open_file(int f) : fd(f) {}
  ~open_file() {
    if (fd >= 0) ::close(fd);
  }
  open_file(const open_file&) = delete;
  open_file& operator=(const open_file&) = delete;
};

// The one query parameter `name`; empty when absent or repeated (both are malformed links).
std::string single_param(const httplib::Request& req, const char* name) {
  return req.get_param_value_count(name) == 1 ? req.get_param_value(name) : std::string();
}

}  // namespace

byte_range parse_byte_range(std::string_view header, std::uint64_t size) {
  byte_range r;
  header = trim(header);
  if (!header.starts_with("bytes=")) return r;
  auto spec = trim(header.substr(6));
  if (spec.find(',') != std::string_view::npos) return r;  // multi-range: whole file
  const auto dash = spec.find('-');
  if (dash == std::string_view::npos) return r;
  const auto a = trim(spec.substr(0, dash));
  const auto b = trim(spec.substr(dash + 1));
  std::uint64_t first = 0, last = 0;
  if (a.empty()) {  // suffix: the last n bytes
    if (!parse_u64(b, last)) return r;
    if (last == 0 || size == 0) return {byte_range::kind::unsatisfiable, 0, 0};
    const auto n = std::min(last, size);
    return {byte_range::kind::single, size - n, size - 1};
  }
  if (!parse_u64(a, first)) return r;
  if (b.empty()) {
    last = UINT64_MAX;
  } else if (!parse_u64(b, last) || last < first) {
    return r;
  }
  if (first >= size) return {byte_range::kind::unsatisfiable, 0, 0};
  return {byte_range::kind::single, first, std::min(last, size - 1)};
}

server::server(server_deps deps, std::string host, std::uint16_t port)
    : d_(std::move(deps)),
      host_(std::move(host)),
      port_(port),
      svr_(std::make_unique<httplib::Server>()) {
  routes();
}

server::~server() {
  stop();
}

void server::start() {
  if (!svr_->bind_to_port(host_, port_))
    throw std::runtime_error("cannot listen for HTTP on " + host_ + ":" + std::to_string(port_));
  thread_ = std::thread([this] { svr_->listen_after_bind(); });
  spdlog::info("decision=http_listening addr={}:{}", host_, port_);
}

void server::stop() {
  if (!thread_.joinable()) return;
  svr_->stop();
  thread_.join();
  spdlog::info("decision=http_stopped");
}

void server::routes() {
  // Nothing here takes a request body, and httplib reads one of any size into memory (for
  // POST, PUT, PATCH and DELETE, unauthenticated, before routing) unless it is capped. Its
  // pre-routing handler is no help: it runs after the body was read, and then uncapped.
  svr_->set_payload_max_length(kMaxRequestBody);

  svr_->Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
    const auto [mqtt_up, db_up] = d_.health();
    res.status = mqtt_up && db_up ? 200 : 503;
    res.set_header("Cache-Control", "no-store");
    res.set_content(nlohmann::json{{"mqtt", mqtt_up}, {"db", db_up}}.dump(), "application/json");
    // Probed every few seconds by load balancers: debug, not info.
    spdlog::debug("decision=http_health mqtt={} db={} status={}", mqtt_up, db_up, res.status);
  });

  // GET also answers HEAD in httplib: same headers, no body.
  svr_->Get(R"(/v1/images/([^/]*))", [this](const httplib::Request& req, httplib::Response& res) {
    const std::string sha = req.matches[1];
    const std::string device = single_param(req, "d");
    const std::string range_header = req.get_header_value("Range");
    const auto log = [&](int status, std::string_view why, std::string_view range) {
      spdlog::info(
          "decision=http_download method={} device={} sha={} range=\"{}\" status={} reason={}",
          req.method, printable(device), printable(sha), range, status, why);
    };
    // httplib applies req.ranges to whatever we answer; we do ranges ourselves, so it must not.
    const_cast<httplib::Request&>(req).ranges.clear();
    res.set_header("Cache-Control", "no-store");

    if (!protocol::valid_sha256_hex(sha)) {
      res.status = 404;
      return log(404, "bad_sha", printable(range_header));
    }
    // An unknown image is 404 whatever the link says, as the issue and README promise; only a
    // client that already knows an image's SHA-256 learns that it is stored, nothing more.
    const auto path = d_.path_of(sha);
    auto file = std::make_shared<open_file>(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st {};
    if (file->fd < 0 || ::fstat(file->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      res.status = 404;
      return log(404, "no_image", printable(range_header));
    }
    const auto check =
        d_.links.verify(sha, device, single_param(req, "exp"), single_param(req, "t"), d_.now());
    if (check.verdict != link_verdict::ok) {
      res.status = 403;
      return log(403, to_string(check.verdict), printable(range_header));
    }
    const auto size = static_cast<std::uint64_t>(st.st_size);
    res.set_header("ETag", "\"" + sha + "\"");
    res.set_header("Accept-Ranges", "bytes");

    auto r = parse_byte_range(range_header, size);
    if (r.k == byte_range::kind::unsatisfiable) {
      res.status = 416;
      res.set_header("Content-Range", "bytes */" + std::to_string(size));
      return log(416, "unsatisfiable", printable(range_header));
    }
    std::uint64_t first = 0, len = size;
    std::string range_text = "all";
    if (r.k == byte_range::kind::single) {
      first = r.first;
      len = r.last - r.first + 1;
      range_text = std::to_string(r.first) + "-" + std::to_string(r.last);
      res.status = 206;
      res.set_header("Content-Range", "bytes " + range_text + "/" + std::to_string(size));
    } else {
      res.status = 200;
    }
    if (len == 0) {  // empty image: httplib wants a body, not a zero-length provider
      res.set_content("", "application/octet-stream");
      return log(res.status, "ok", range_text);
    }
    // httplib calls this with offsets into [0, len) until it has len bytes; one buffer per
    // response, allocated on first use, so HEAD costs nothing.
    auto buf = std::make_shared<std::vector<char>>();
    res.set_content_provider(
        static_cast<std::size_t>(len), "application/octet-stream",
        [file, buf, first](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
          if (buf->empty()) buf->resize(kReadChunk);
          const auto want = std::min(length, buf->size());
          const auto got = ::pread(file->fd, buf->data(), want, static_cast<off_t>(first + offset));
          if (got <= 0) return false;  // truncated underneath us: abort the connection
          return sink.write(buf->data(), static_cast<std::size_t>(got));
        });
    log(res.status, "ok", range_text);
  });
}

}  // namespace otter::http
