// otter-device-host: one device on a POSIX host, driven by the portable C device core
// (firmware-examples/core) the way the ESP32 examples drive it. The "flash partition" is a file,
// a "reboot" is a new MQTT connection, and what must survive a reboot lives in --state-dir.
#include <MQTTClient.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "options.hpp"
#include "otter_core.h"

namespace otter::device_host {
namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int kExitOk = 0, kExitFail = 1, kExitUsage = 2, kExitPowerLoss = 3;

std::string g_id = "?";

void log(const std::string& msg) {
  std::cout << "otter-device-host[" << g_id << "]: " << msg << std::endl;
}

int random_fn(void*, std::uint8_t* out, std::size_t n) {
  while (n > 0) {
    const ssize_t got = getrandom(out, n, 0);
    if (got <= 0) return -1;
    out += got;
    n -= static_cast<std::size_t>(got);
  }
  return 0;
}

std::optional<std::string> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Replaces the file atomically (a crash leaves the old or the new content).
bool write_file(const fs::path& p, const std::string& text) {
  const auto tmp = p.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out || !(out << text)) return false;
  }
  std::error_code ec;
  fs::rename(tmp, p, ec);
  return !ec;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// Paho C never sets TCP_NODELAY and does not hand out its socket; without it every request and
// answer waits on Nagle + delayed ACK (tens of ms on loopback). This process has one TCP
// connection, the broker's: set the option on every connected TCP socket.
void set_nodelay_on_tcp_sockets() {
  rlimit lim{};
  const int max_fd =
      getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < 65536 ? int(lim.rlim_cur) : 1024;
  for (int fd = 3; fd < max_fd; ++fd) {
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) continue;
    sockaddr_storage peer{};
    socklen_t plen = sizeof peer;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) != 0) continue;
    if (peer.ss_family != AF_INET && peer.ss_family != AF_INET6) continue;
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
}

struct message {
  std::string topic;
  std::string payload;
};

// Paho's synchronous client: no callbacks, so messages queue up for receive() and the whole
// device is one thread, like a firmware main loop.
class mqtt_link {
 public:
  mqtt_link(const options& o, std::string& error) {
    if (MQTTClient_create(&c_, o.mqtt_url.c_str(), o.id.c_str(), MQTTCLIENT_PERSISTENCE_NONE,
                          nullptr) != MQTTCLIENT_SUCCESS) {
      error = "cannot create an MQTT client for " + o.mqtt_url;
      c_ = nullptr;
      return;
    }
    MQTTClient_connectOptions opts = MQTTClient_connectOptions_initializer;
    opts.keepAliveInterval = 30;
    opts.cleansession = 1;
    if (!o.user.empty()) opts.username = o.user.c_str();
    if (!o.password.empty()) opts.password = o.password.c_str();
    int rc = MQTTCLIENT_FAILURE;
    for (int attempt = 0; attempt < 5; ++attempt) {
      rc = MQTTClient_connect(c_, &opts);
      if (rc == MQTTCLIENT_SUCCESS) break;
      std::this_thread::sleep_for(500ms);
    }
    if (rc != MQTTCLIENT_SUCCESS) {
      error = "cannot connect to " + o.mqtt_url + " as " + o.id + " (MQTT rc " +
              std::to_string(rc) + ")";
      return;
    }
    connected_ = true;
    set_nodelay_on_tcp_sockets();
  }
  ~mqtt_link() {
    if (!c_) return;
    if (connected_) MQTTClient_disconnect(c_, 1000);
    MQTTClient_destroy(&c_);
  }
  mqtt_link(const mqtt_link&) = delete;
  mqtt_link& operator=(const mqtt_link&) = delete;

  bool ok() const { return connected_; }

  bool subscribe(const std::string& filter) {
    return MQTTClient_subscribe(c_, filter.c_str(), 1) == MQTTCLIENT_SUCCESS;
  }

  // QoS 1. Waiting for the PUBACK costs at least 100 ms in Paho's synchronous client (its
  // yield runs for 100 ms whatever arrives), so chunk requests do not wait: their PUBACKs are
  // read by the next receive(), and a lost request is repeated on the chunk timeout anyway.
  bool publish(const std::string& topic, const std::string& payload, bool wait = true) {
    MQTTClient_deliveryToken token = 0;
    if (MQTTClient_publish(c_, topic.c_str(), static_cast<int>(payload.size()), payload.data(), 1,
                           0, &token) != MQTTCLIENT_SUCCESS)
      return false;
    return !wait || MQTTClient_waitForCompletion(c_, token, 10000) == MQTTCLIENT_SUCCESS;
  }

  // Paho's receive waits on the socket for the whole timeout before it looks at messages that
  // arrived while a publish waited for its PUBACK: ask without waiting first.
  std::optional<message> receive(int timeout_ms) {
    if (auto m = receive_once(0)) return m;
    if (lost_) return std::nullopt;
    return receive_once(timeout_ms);
  }

  std::optional<message> receive_once(int timeout_ms) {
    char* topic = nullptr;
    int topic_len = 0;
    MQTTClient_message* m = nullptr;
    const int rc = MQTTClient_receive(c_, &topic, &topic_len, &m, timeout_ms);
    if ((rc != MQTTCLIENT_SUCCESS && rc != MQTTCLIENT_TOPICNAME_TRUNCATED) || !m) {
      if (topic) MQTTClient_free(topic);
      if (m) MQTTClient_freeMessage(&m);
      if (rc != MQTTCLIENT_SUCCESS && rc != MQTTCLIENT_TOPICNAME_TRUNCATED) {
        lost_ = true;
        std::this_thread::sleep_for(std::chrono::milliseconds(std::max(timeout_ms, 10)));
      }
      return std::nullopt;
    }
    message out;
    out.topic = topic_len > 0 ? std::string(topic, static_cast<std::size_t>(topic_len))
                              : std::string(topic);
    out.payload.assign(static_cast<const char*>(m->payload),
                       static_cast<std::size_t>(m->payloadlen));
    MQTTClient_freeMessage(&m);
    MQTTClient_free(topic);
    return out;
  }

  bool lost() const { return lost_ || !MQTTClient_isConnected(c_); }

 private:
  MQTTClient c_ = nullptr;
  bool connected_ = false;
  bool lost_ = false;
};

class host_device {
 public:
  explicit host_device(options o)
      : o_(std::move(o)), deadline_(clock_type::now() + std::chrono::seconds(o_.timeout_s)) {}

  int run() {
    std::error_code ec;
    fs::create_directories(o_.state_dir, ec);
    if (ec) return fail("cannot create the state dir " + o_.state_dir + ": " + ec.message());
    if (!load_keys()) return kExitFail;
    running_ = trim(read_file(state("version")).value_or(o_.version));
    if (!init_core()) return kExitFail;
    for (int round = 0; round < 5; ++round) {
      if (clock_type::now() > deadline_) return fail("timed out");
      std::string error;
      mqtt_link link(o_, error);
      if (!link.ok()) return fail(error);
      link_ = &link;
      char topic[256];
      otter_topic(&dev_, OTTER_TOPIC_DOWN_FILTER, topic, sizeof topic);
      if (!link.subscribe(topic)) return fail(std::string("cannot subscribe to ") + topic);
      log("connected to " + o_.mqtt_url + ", running " + running_);

      if (auto pending = read_file(state("pending"))) {
        // First boot of a new image: it stayed up, so it reports success.
        std::istringstream in(*pending);
        std::string version, rollout;
        in >> version >> rollout;
        otter_status st{OTTER_STATE_SUCCESS, -1, nullptr, version.c_str(),
                        rollout == "-" ? "" : rollout.c_str()};
        if (!status(st)) return fail("cannot publish the success status");
        fs::remove(state("pending"), ec);
        log("reported success for " + version);
      }

      otter_manifest m{};
      const int checked = check(m);
      if (checked != kExitOk) return checked;
      if (!m.update) {
        log("up to date at " + running_ +
            (m.retry_s >= 0 ? " (check again in " + std::to_string(m.retry_s) + " s)" : ""));
        return kExitOk;
      }
      log(std::string("offered ") + m.version + " (" + std::to_string(m.size) + " bytes, rollout " +
          m.rollout + ")");
      const int got = download(m);
      if (got != kExitOk) return got;
      const int installed = install(m);
      if (installed != kExitOk) return installed;
      link_ = nullptr;
      // Leaving the scope disconnects: the "reboot".
      log("rebooting into " + std::string(m.version));
    }
    return fail("too many updates in one run");
  }

 private:
  fs::path state(const char* name) const { return fs::path(o_.state_dir) / name; }

  int fail(const std::string& why) {
    log("error: " + why);
    return kExitFail;
  }

  bool load_pem(const std::string& file, otter_pubkey& out) {
    auto pem = read_file(file);
    if (!pem) {
      fail("cannot read " + file);
      return false;
    }
    const auto rc = otter_pubkey_from_pem(pem->data(), pem->size(), &out);
    if (rc != OTTER_OK) {
      fail(file + ": " + otter_strerror(rc));
      return false;
    }
    return true;
  }

  bool load_keys() {
    if (!load_pem(o_.pubkey_file, manifest_key_)) return false;
    if (!o_.release_key_file.empty() && !load_pem(o_.release_key_file, release_key_)) return false;
    return true;
  }

  bool init_core() {
    for (const auto& [k, v] : o_.attrs) attrs_.push_back({k.c_str(), v.c_str()});
    otter_config cfg{};
    cfg.root = o_.root.c_str();
    cfg.device_id = o_.id.c_str();
    cfg.model = o_.model.c_str();
    cfg.version = running_.c_str();
    cfg.manifest_keys = &manifest_key_;
    cfg.manifest_key_count = 1;
    cfg.release_key = o_.release_key_file.empty() ? nullptr : &release_key_;
    cfg.attrs = attrs_.empty() ? nullptr : attrs_.data();
    cfg.attr_count = attrs_.size();
    cfg.chunk_len_max = o_.chunk;
    cfg.window_max = o_.window;
    cfg.random = random_fn;
    const auto rc = otter_init(&dev_, &cfg);
    if (rc != OTTER_OK) {
      fail(std::string("invalid device settings (id, model, version, root or attrs): ") +
           otter_strerror(rc));
      return false;
    }
    return true;
  }

  bool publish(otter_topic_kind kind, const char* payload, std::size_t len) {
    char topic[256];
    if (otter_topic(&dev_, kind, topic, sizeof topic) != OTTER_OK) return false;
    return link_->publish(topic, std::string(payload, len), kind != OTTER_TOPIC_CHUNK);
  }

  bool status(const otter_status& st) {
    char buf[768];
    std::size_t n = 0;
    const auto rc = otter_build_status(&dev_, &st, buf, sizeof buf, &n);
    if (rc != OTTER_OK) {
      log(std::string("cannot build a status: ") + otter_strerror(rc));
      return false;
    }
    return publish(OTTER_TOPIC_STATUS, buf, n);
  }

  void report_error(const std::string& payload) {
    char req[65], code[32], msg[300];
    if (otter_parse_error(payload.data(), payload.size(), req, sizeof req, code, sizeof code, msg,
                          sizeof msg) == OTTER_OK)
      last_error_ = std::string(code) + ": " + msg + " (req " + req + ")";
    else
      last_error_ = "unreadable error message";
    log("service error " + last_error_);
  }

  // Sends a check and waits for its verified answer.
  int check(otter_manifest& m) {
    for (int attempt = 0; attempt < 3; ++attempt) {
      char buf[2048];
      std::size_t n = 0;
      auto rc = otter_build_check(&dev_, buf, sizeof buf, &n);
      if (rc != OTTER_OK) return fail(std::string("cannot build a check: ") + otter_strerror(rc));
      if (!publish(OTTER_TOPIC_CHECK, buf, n)) return fail("cannot publish the check");
      const auto until = std::min(deadline_, clock_type::now() + 10s);
      while (clock_type::now() < until) {
        auto msg = link_->receive(200);
        if (!msg) {
          if (link_->lost()) return fail("connection lost while waiting for an offer");
          continue;
        }
        otter_down_kind kind;
        if (otter_classify_topic(&dev_, msg->topic.data(), msg->topic.size(), &kind, nullptr) !=
            OTTER_OK)
          continue;
        if (kind == OTTER_DOWN_ERROR) {
          report_error(msg->payload);
          if (msg->payload.find(std::string("\"") + dev_.check_req + "\"") != std::string::npos)
            return fail("the service refused the check: " + last_error_);
          continue;
        }
        if (kind != OTTER_DOWN_OFFER) continue;
        rc = otter_handle_offer(&dev_, msg->payload.data(), msg->payload.size(), scratch_.data(),
                                scratch_.size(), static_cast<std::int64_t>(std::time(nullptr)), &m);
        if (rc == OTTER_E_REQ) continue;  // an answer to an earlier check
        if (rc != OTTER_OK) {
          const std::string why = std::string("manifest refused: ") + otter_err_name(rc) + " (" +
                                  otter_strerror(rc) + ")";
          otter_status st{OTTER_STATE_REJECTED, -1, why.c_str(), nullptr, nullptr};
          status(st);
          return fail(why);
        }
        return kExitOk;
      }
      log("no answer to check " + std::string(dev_.check_req) + ", asking again");
    }
    return fail("no answer to three checks");
  }

  void save_progress(const otter_manifest& m) {
    write_file(state("download"), std::string(m.sha256_hex) + " " +
                                      std::to_string(otter_download_offset(&dev_)) + "\n");
  }

  // Resumes from the slot when the state dir says it holds a prefix of this very image.
  bool restore(const otter_manifest& m, int fd) {
    std::uint64_t offset = 0;
    if (auto saved = read_file(state("download"))) {
      std::istringstream in(*saved);
      std::string sha;
      std::uint64_t at = 0;
      if (in >> sha >> at && sha == m.sha256_hex && at < m.size) offset = at;
    }
    std::error_code ec;
    const auto slot_size = fs::file_size(o_.slot_file, ec);
    if (ec || slot_size < offset) offset = 0;
    if (offset > 0 && otter_download_offset(&dev_) == 0) {
      std::vector<std::uint8_t> buf(64 * 1024);
      std::uint64_t at = 0;
      while (at < offset) {
        const auto want =
            static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), offset - at));
        const ssize_t got = pread(fd, buf.data(), want, static_cast<off_t>(at));
        if (got <= 0) return false;
        if (otter_download_restore(&dev_, buf.data(), static_cast<std::size_t>(got)) != OTTER_OK)
          return false;
        at += static_cast<std::uint64_t>(got);
      }
      log("resuming at " + std::to_string(offset) + " of " + std::to_string(m.size));
    }
    // Anything past what the core has hashed is stale.
    return ftruncate(fd, static_cast<off_t>(otter_download_offset(&dev_))) == 0;
  }

  int download(const otter_manifest& m) {
    const int fd = open(o_.slot_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return fail("cannot open the slot " + o_.slot_file + ": " + std::strerror(errno));
    struct fd_closer {
      int fd;
      ~fd_closer() { close(fd); }
    } closer{fd};
    if (!restore(m, fd)) {
      otter_download_abort(&dev_);
      return fail("cannot restore the download from the slot");
    }
    int reported = -1;
    auto progress = [&] {
      const int p = otter_download_progress(&dev_);
      if (reported >= 0 && p / 10 == reported / 10) return;
      reported = p;
      otter_status st{OTTER_STATE_DOWNLOADING, p, nullptr, nullptr, nullptr};
      status(st);
    };
    progress();
    const auto started = clock_type::now();
    auto last_activity = clock_type::now();
    std::uint64_t requests = 0, duplicates = 0, refused = 0;
    while (!otter_download_complete(&dev_)) {
      if (clock_type::now() > deadline_) {
        save_progress(m);
        return fail("timed out downloading at " + std::to_string(otter_download_offset(&dev_)));
      }
      const bool stalled =
          clock_type::now() - last_activity > std::chrono::milliseconds(o_.chunk_timeout_ms);
      if (otter_download_need_request(&dev_) || stalled) {
        char buf[256];
        std::size_t n = 0;
        const auto rc = otter_build_chunk_request(&dev_, buf, sizeof buf, &n);
        if (rc != OTTER_OK) return fail(std::string("chunk request: ") + otter_strerror(rc));
        if (!publish(OTTER_TOPIC_CHUNK, buf, n)) return fail("cannot publish a chunk request");
        ++requests;
        last_activity = clock_type::now();
      }
      auto msg = link_->receive(100);
      if (!msg) {
        if (link_->lost()) {
          save_progress(m);
          return fail("connection lost during the download");
        }
        continue;
      }
      otter_down_kind kind;
      std::uint64_t offset = 0;
      const auto crc =
          otter_classify_topic(&dev_, msg->topic.data(), msg->topic.size(), &kind, &offset);
      if (crc != OTTER_OK) continue;
      if (kind == OTTER_DOWN_ERROR) {
        report_error(msg->payload);
        if (last_error_.rfind("rate_limited", 0) == 0) {
          std::this_thread::sleep_for(1s);
          last_activity = clock_type::now() - std::chrono::milliseconds(o_.chunk_timeout_ms);
          continue;
        }
        save_progress(m);
        const std::string why = "download refused by the service: " + last_error_;
        otter_status st{OTTER_STATE_FAILED, -1, why.c_str(), nullptr, nullptr};
        status(st);
        return fail(why);
      }
      if (kind != OTTER_DOWN_CHUNK) continue;
      const auto* data = reinterpret_cast<const std::uint8_t*>(msg->payload.data());
      const auto rc = otter_chunk_receive(&dev_, offset, data, msg->payload.size());
      if (rc == OTTER_DUPLICATE) {
        ++duplicates;
        continue;
      }
      if (rc == OTTER_OUT_OF_ORDER) {
        ++refused;
        continue;
      }
      if (rc != OTTER_OK) {
        log(std::string("chunk at ") + std::to_string(offset) + " dropped: " + otter_strerror(rc));
        continue;
      }
      if (pwrite(fd, data, msg->payload.size(), static_cast<off_t>(offset)) !=
          static_cast<ssize_t>(msg->payload.size())) {
        otter_download_abort(&dev_);
        const std::string why = std::string("slot write failed: ") + std::strerror(errno);
        otter_status st{OTTER_STATE_FAILED, -1, why.c_str(), nullptr, nullptr};
        status(st);
        return fail(why);
      }
      last_activity = clock_type::now();
      save_progress(m);
      progress();
      if (o_.stop_after > 0 && otter_download_offset(&dev_) >= o_.stop_after) {
        fsync(fd);
        log("simulated power loss at " + std::to_string(otter_download_offset(&dev_)) + " bytes");
        std::_Exit(kExitPowerLoss);  // no clean disconnect, like a power cut
      }
    }
    fsync(fd);
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - started).count();
    log("downloaded " + std::to_string(m.size) + " bytes in " + std::to_string(ms) + " ms, " +
        std::to_string(requests) + " requests (" + std::to_string(duplicates) + " duplicate, " +
        std::to_string(refused) + " out-of-order chunks dropped)");
    return kExitOk;
  }

  int install(const otter_manifest& m) {
    std::error_code ec;
    otter_status verifying{OTTER_STATE_VERIFYING, 100, nullptr, nullptr, nullptr};
    status(verifying);
    const auto rc = otter_download_finish(&dev_);
    fs::remove(state("download"), ec);
    if (rc != OTTER_OK) {
      const std::string why =
          std::string("image refused: ") + otter_err_name(rc) + " (" + otter_strerror(rc) + ")";
      otter_status st{OTTER_STATE_FAILED, -1, why.c_str(), nullptr, nullptr};
      status(st);
      return fail(why);
    }
    otter_status installing{OTTER_STATE_INSTALLING, 100, nullptr, nullptr, nullptr};
    status(installing);
    // What the bootloader would do: boot the new slot; the new image then reports success.
    if (!write_file(state("pending"),
                    std::string(m.version) + " " + (m.rollout[0] ? m.rollout : "-") + "\n") ||
        !write_file(state("version"), std::string(m.version) + "\n"))
      return fail("cannot write the state dir");
    running_ = m.version;
    if (otter_set_version(&dev_, running_.c_str()) != OTTER_OK)
      return fail("cannot set the running version");
    return kExitOk;
  }

  options o_;
  clock_type::time_point deadline_;
  std::string running_;
  otter_pubkey manifest_key_{};
  otter_pubkey release_key_{};
  std::vector<otter_attr> attrs_;
  otter_device dev_{};
  std::vector<char> scratch_ = std::vector<char>(OTTER_MESSAGE_MAX);
  mqtt_link* link_ = nullptr;
  std::string last_error_;
};

}  // namespace
}  // namespace otter::device_host

int main(int argc, char** argv) {
  using namespace otter::device_host;
  std::string error;
  auto o = parse_options(argc, argv, error);
  if (!o) {
    if (error.empty()) {
      std::cout << kUsage;
      return kExitOk;
    }
    std::cerr << "otter-device-host: " << error << "\n\n" << kUsage;
    return kExitUsage;
  }
  g_id = o->id;
  host_device d(std::move(*o));
  return d.run();
}
