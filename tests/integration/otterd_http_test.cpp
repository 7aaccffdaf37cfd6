// HTTP download (PROTOCOL.md `url` claim): signed links, Range, HEAD, refusals and /healthz.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <thread>

#include "crypto/hash.hpp"
#include "http/link_signer.hpp"
#include "support/harness.hpp"
#include "support/net.hpp"

namespace otter::test {
namespace {

const std::string kModel = "esp32-devkitc";

class http_test : public otter_fixture {
 protected:
  // Restarts otterd with HTTP download on a fresh port.
  void start_http(std::map<std::string, std::string> extra = {}) {
    port_ = free_port();
    base_ = "http://127.0.0.1:" + std::to_string(port_);
    extra["OTTER_HTTP_ADDR"] = "127.0.0.1:" + std::to_string(port_);
    extra["OTTER_PUBLIC_URL"] = base_ + "/";  // the trailing '/' is dropped by otterd
    admin_.reset();
    ASSERT_EQ(stop_otterd(), 0);
    start_otterd(extra);
    admin_ = std::make_unique<operator_client>(env_, *topics_, "admin1");
  }

  httplib::Result get(const std::string& path, const httplib::Headers& h = {}) {
    httplib::Client c("127.0.0.1", port_);
    return c.Get(path.c_str(), h);
  }
  httplib::Result head(const std::string& path, const httplib::Headers& h = {}) {
    httplib::Client c("127.0.0.1", port_);
    return c.Head(path.c_str(), h);
  }
  // The offer's url as a path on our server.
  std::string path_of(const nlohmann::json& claims) {
    const std::string url = claims.at("url");
    EXPECT_TRUE(url.starts_with(base_ + "/v1/images/")) << url;
    return url.substr(base_.size());
  }
  // The secret otterd made on first start (no OTTER_LINK_SECRET_FILE: <data dir>/link-secret).
  http::link_signer signer() {
    return http::link_signer::load_or_create(dir_ / "data" / "link-secret");
  }

  std::uint16_t port_ = 0;
  std::string base_;
};

TEST_F(http_test, a_device_downloads_by_url_with_ranges_and_head) {
  start_http();
  const auto image = random_image(1'500'000, 11);
  const auto rel = add_release(kModel, "2.0.0", image);
  const std::string sha = rel["sha256"];
  create_rollout(kModel, "2.0.0", {{"type", "all"}});
  device d(env_, *topics_, "web-1");
  d.connect_started();
  auto o = d.check(*pub_, kModel, "1.0.0");
  ASSERT_TRUE(o && o->signature_ok && o->answer["update"] == true);
  const auto path = path_of(o->claims);
  EXPECT_TRUE(path.starts_with("/v1/images/" + sha + "?d=web-1&exp=" +
                               std::to_string(o->claims["exp"].get<std::int64_t>()) + "&t="))
      << path;

  auto r = get(path);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body.size(), image.size());
  EXPECT_EQ(crypto::sha256_hex(r->body), sha);
  EXPECT_EQ(r->get_header_value("ETag"), "\"" + sha + "\"");
  EXPECT_EQ(r->get_header_value("Accept-Ranges"), "bytes");
  EXPECT_EQ(r->get_header_value("Content-Length"), "1500000");
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/octet-stream");

  const struct {
    const char* range;
    std::size_t first, last;
  } ranges[] = {{"bytes=0-99", 0, 99},
                {"bytes=700000-765535", 700000, 765535},
                {"bytes=-1000", 1'499'000, 1'499'999},
                {"bytes=1499990-", 1'499'990, 1'499'999},
                {"bytes=1400000-9999999", 1'400'000, 1'499'999}};
  for (const auto& c : ranges) {
    auto p = get(path, {{"Range", c.range}});
    ASSERT_TRUE(p) << c.range;
    EXPECT_EQ(p->status, 206) << c.range;
    EXPECT_EQ(p->body, image.substr(c.first, c.last - c.first + 1)) << c.range;
    EXPECT_EQ(p->get_header_value("Content-Range"),
              "bytes " + std::to_string(c.first) + "-" + std::to_string(c.last) + "/1500000")
        << c.range;
    EXPECT_EQ(p->get_header_value("Content-Length"), std::to_string(c.last - c.first + 1));
    EXPECT_EQ(p->get_header_value("ETag"), "\"" + sha + "\"");
  }

  // Unsatisfiable: 416 with the size.
  for (const char* bad : {"bytes=1500000-", "bytes=2000000-2000010", "bytes=-0"}) {
    auto p = get(path, {{"Range", bad}});
    ASSERT_TRUE(p) << bad;
    EXPECT_EQ(p->status, 416) << bad;
    EXPECT_EQ(p->get_header_value("Content-Range"), "bytes */1500000") << bad;
    EXPECT_TRUE(p->body.empty()) << bad;
  }
  // Multi-range is ignored: the whole image with 200.
  auto multi = get(path, {{"Range", "bytes=0-9,100-109"}});
  ASSERT_TRUE(multi);
  EXPECT_EQ(multi->status, 200);
  EXPECT_EQ(multi->body.size(), image.size());

  // HEAD: the headers of GET, no body.
  auto h = head(path);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_TRUE(h->body.empty());
  EXPECT_EQ(h->get_header_value("Content-Length"), "1500000");
  EXPECT_EQ(h->get_header_value("ETag"), "\"" + sha + "\"");
  EXPECT_EQ(h->get_header_value("Accept-Ranges"), "bytes");
  auto hr = head(path, {{"Range", "bytes=10-19"}});
  ASSERT_TRUE(hr);
  EXPECT_EQ(hr->status, 206);
  EXPECT_TRUE(hr->body.empty());
  EXPECT_EQ(hr->get_header_value("Content-Range"), "bytes 10-19/1500000");

  // The secret was generated on first start, readable by otterd only.
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "data" / "link-secret").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::ifstream in(dir_ / "data" / "link-secret");
  std::string secret;
  std::getline(in, secret);
  EXPECT_EQ(secret.size(), 64u);
  EXPECT_EQ(otterd_->log().find(secret), std::string::npos) << "the secret was logged";
}

TEST_F(http_test, bad_links_are_refused) {
  start_http();
  const auto image = random_image(50'000, 12);
  const auto rel = add_release(kModel, "2.1.0", image);
  const std::string sha = rel["sha256"];
  create_rollout(kModel, "2.1.0", {{"type", "all"}});
  device d(env_, *topics_, "web-2");
  d.connect_started();
  auto o = d.check(*pub_, kModel, "1.0.0");
  ASSERT_TRUE(o && o->answer["update"] == true);
  const auto path = path_of(o->claims);
  const std::int64_t exp = o->claims["exp"];
  ASSERT_EQ(get(path)->status, 200);

  auto tampered = path;
  tampered[tampered.size() - 3] = tampered[tampered.size() - 3] == 'A' ? 'B' : 'A';
  auto other_device = path;
  other_device.replace(other_device.find("d=web-2"), 7, "d=web-3");
  auto later = path;
  later.replace(later.find("exp="), 4 + std::to_string(exp).size(),
                "exp=" + std::to_string(exp + 3600));

  const auto s = signer();
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  const auto unknown = crypto::sha256_hex("never uploaded");
  const struct {
    const char* name;
    std::string path;
    int status;
  } cases[] = {
      {"tampered token", tampered, 403},
      {"other device", other_device, 403},
      {"exp moved", later, 403},
      {"expired (right secret)", s.make("web-2", sha, now - 10), 403},
      {"no token", "/v1/images/" + sha + "?d=web-2&exp=" + std::to_string(exp), 403},
      {"no query", "/v1/images/" + sha, 403},
      {"repeated token", path + "&t=x", 403},
      // An image not on disk is 404 whatever the link: valid, tampered or absent.
      {"unknown image, valid token", s.make("web-2", unknown, now + 600), 404},
      {"unknown image, another image's token",
       "/v1/images/" + unknown + path.substr(path.find('?')), 404},
      {"unknown image, no query", "/v1/images/" + unknown, 404},
      {"not a sha256", "/v1/images/xyz?d=web-2&exp=1&t=x", 404},
      {"uppercase sha256", "/v1/images/" + std::string(64, 'A'), 404},
      {"dot dot", "/v1/images/..%2f..%2fetc%2fpasswd", 404},
  };
  for (const auto& c : cases) {
    auto r = get(c.path);
    ASSERT_TRUE(r) << c.name;
    EXPECT_EQ(r->status, c.status) << c.name;
    EXPECT_TRUE(r->body.empty() || r->status == 404) << c.name;
    EXPECT_FALSE(r->has_header("ETag")) << c.name;
    auto h = head(c.path);
    ASSERT_TRUE(h) << c.name;
    EXPECT_EQ(h->status, c.status) << "HEAD " << c.name;
  }
  // A link made with the right secret for a live image works: the secret is the file's.
  EXPECT_EQ(get(s.make("web-9", sha, now + 60))->status, 200);
}

// otterd's peak resident memory (VmHWM) in KiB.
long peak_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("VmHWM:")) return std::stol(line.substr(6));
  return -1;
}

// Sends `head` then up to `body_bytes` of body on a fresh connection, stopping when the server
// answers or closes; returns the status line (empty if none came).
std::string send_with_body(std::uint16_t port, const std::string& head, std::size_t body_bytes) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return "";
  timeval tv{0, 200'000};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ::send(fd, head.data(), head.size(), MSG_NOSIGNAL);
  const std::string block(64 * 1024, 'x');
  for (std::size_t sent = 0; sent < body_bytes;) {
    const auto n =
        ::send(fd, block.data(), std::min(block.size(), body_bytes - sent), MSG_NOSIGNAL);
    if (n <= 0) break;  // the server stopped reading (answered, or closed)
    sent += static_cast<std::size_t>(n);
  }
  tv = {5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string got;
  char buf[512];
  for (ssize_t n;
       got.find("\r\n") == std::string::npos && (n = ::recv(fd, buf, sizeof buf, 0)) > 0;)
    got.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return got.substr(0, got.find("\r\n"));
}

// Downloads take no body, and httplib would read one of any size into memory before routing:
// a body past a few bytes is refused by its declared length, unread.
TEST_F(http_test, request_bodies_are_refused_unread) {
  start_http();
  const auto rel = add_release(kModel, "2.2.0", random_image(10'000, 13));
  const std::string path = "/v1/images/" + rel["sha256"].get<std::string>();
  const auto before = peak_kib(otterd_->pid());
  ASSERT_GT(before, 0);
  constexpr std::size_t k64MiB = 64u << 20;
  for (const char* method : {"POST", "PUT", "PATCH", "DELETE"}) {
    const auto status = send_with_body(
        port_,
        std::string(method) + " " + path +
            " HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(k64MiB) + "\r\n\r\n",
        k64MiB);
    EXPECT_EQ(status, "HTTP/1.1 413 Payload Too Large") << method;
  }
  const auto after = peak_kib(otterd_->pid());
  EXPECT_LT(after - before, 16 * 1024) << "otterd's peak memory grew by " << (after - before)
                                       << " KiB for 320 MiB of refused bodies";
  httplib::Client c("127.0.0.1", port_);
  auto r = c.Post(path.c_str(), "", "text/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);                // no such route for POST
  EXPECT_EQ(get("/healthz")->status, 200);  // and it still serves
}

TEST_F(http_test, healthz_reports_mqtt_and_database) {
  start_http();
  int status = 0;
  std::string body, type;
  // otterd is ready once MQTT is up; the writer's database flag may lag a moment.
  for (int i = 0; i < 50 && status != 200; ++i) {
    if (i) std::this_thread::sleep_for(100ms);
    if (auto r = get("/healthz")) {
      status = r->status;
      body = r->body;
      type = r->get_header_value("Content-Type");
    }
  }
  EXPECT_EQ(status, 200) << body;
  EXPECT_EQ(nlohmann::json::parse(body), (nlohmann::json{{"mqtt", true}, {"db", true}}));
  EXPECT_EQ(type, "application/json");
}

// A mistyped OTTER_LINK_SECRET_FILE makes a new secret, which would split the links of
// instances meant to share one: otterd says so, as it does for a secret others may read.
TEST_F(http_test, a_made_or_readable_link_secret_is_reported) {
  const auto file = dir_ / "shared-link-secret";
  start_http({{"OTTER_LINK_SECRET_FILE", file.string()}});
  EXPECT_TRUE(std::filesystem::exists(file));
  EXPECT_NE(otterd_->log().find("decision=link_secret_created file=" + file.string() +
                                " reason=\"OTTER_LINK_SECRET_FILE named no file"),
            std::string::npos)
      << otterd_->log();
  EXPECT_EQ(otterd_->log().find("open to other users"), std::string::npos);

  std::filesystem::permissions(
      file, std::filesystem::perms::group_read | std::filesystem::perms::others_read,
      std::filesystem::perm_options::add);
  start_http({{"OTTER_LINK_SECRET_FILE", file.string()}});
  EXPECT_EQ(otterd_->log().find("decision=link_secret_created"), std::string::npos);
  EXPECT_NE(otterd_->log().find("the link secret " + file.string() +
                                " is open to other users (mode 644); run: chmod 600"),
            std::string::npos)
      << otterd_->log();
}

TEST_F(http_test, offers_carry_no_url_when_http_is_off) {
  add_release(kModel, "2.2.0", random_image(1000, 13));
  create_rollout(kModel, "2.2.0", {{"type", "all"}});
  device d(env_, *topics_, "web-off");
  d.connect_started();
  auto o = d.check(*pub_, kModel, "1.0.0");
  ASSERT_TRUE(o && o->answer["update"] == true);
  EXPECT_FALSE(o->claims.contains("url")) << o->claims.dump();
}

}  // namespace
}  // namespace otter::test
