#pragma once
// One simulated device: the state machine of PROTOCOL.md's device side (check, verify the
// signed answer, download by windowed chunk requests, report, "reboot"), with no I/O and no
// clock of its own. The fleet feeds it messages and timer expiries with the current time and
// publishes what it asks for; tests do the same without a broker.
#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/ec_key.hpp"
#include "crypto/hash.hpp"
#include "protocol/semver.hpp"
#include "protocol/topics.hpp"
#include "sim/image_download.hpp"
#include "sim/manifest_check.hpp"

namespace otter::sim {

using sim_clock = std::chrono::steady_clock;

// The time a device is handed: monotonic for its timers, unix seconds for manifest expiry.
struct sim_time {
  sim_clock::time_point mono{};
  std::int64_t unix_s = 0;
};

// What a device is doing; the fleet counts devices per phase.
enum class phase : std::uint8_t {
  idle,         // waiting for its next check
  checking,     // sent a check, waiting for the answer
  downloading,  // fetching the image (or pretending to, without download)
  installing,   // verified, writing the image
  rebooting,    // booting the new image
};
inline constexpr std::size_t kPhaseCount = 5;
std::string_view to_string(phase p) noexcept;

// How a device fetches an offered image: chunk requests over MQTT, or the manifest's `url`.
enum class transport : std::uint8_t { mqtt, http };

// Settings shared by every device of a fleet. The keys must outlive the devices.
struct device_settings {
  std::string model;
  nlohmann::json attrs;                       // object of strings, or null for none
  std::chrono::milliseconds interval{30000};  // between checks, ± jitter
  double jitter = 0.2;
  std::chrono::milliseconds first_check_within{0};  // first check: uniform in [0, this]
  std::optional<std::uint32_t> chunk_len;           // default: the manifest's chunk.max
  std::optional<std::uint32_t> window;              // default: the manifest's chunk.window
  double fail_rate = 0;                             // P(failed); P(rolled_back) = fail_rate / 2
  bool download = true;                             // false: report the steps, fetch nothing
  transport via = transport::mqtt;
  std::chrono::milliseconds http_timeout{300000};   // a whole HTTP download, from the request
  std::chrono::milliseconds answer_timeout{10000};  // for a check's answer
  // Silence before re-requesting; doubled for each re-request in a row (up to 8x), so that an
  // overloaded service is not answered with more requests.
  std::chrono::milliseconds chunk_timeout{5000};
  int chunk_retries = 5;                            // re-requests in a row before giving up
  std::chrono::milliseconds fake_download_time{0};  // without download: time "downloading"
  std::chrono::milliseconds install_time{0};
  std::chrono::milliseconds reboot_time{0};
  const crypto::ec_key* pinned = nullptr;       // manifest key (required)
  const crypto::ec_key* release_key = nullptr;  // verifies image_sig when set
};

struct outgoing {
  std::string topic;
  std::string payload;
};

// Something the fleet's statistics want to know.
struct note {
  enum class kind {
    check,       // a check was sent
    update,      // an update offer was accepted
    up_to_date,  // a signed "no update" was accepted
    status,      // a status was sent; `code` is its state
    error,       // `code`: the service's error code, or a local one (see device.cpp)
    downloaded,  // an image was fetched and verified; `took` since the first request
    updated,     // success after reboot; `took` since the offer was accepted
  };
  kind what;
  std::string code{};
  std::chrono::milliseconds took{0};
};

// An HTTP download the fleet performs for a device (the device itself does no I/O). The
// fleet streams the body through SHA-256, reads at most `size` + 1 bytes, and answers with
// on_fetched() and the same `id`.
struct fetch_request {
  std::uint64_t id = 0;
  std::string url;
  std::uint64_t size = 0;
};

struct fetch_result {
  std::uint64_t id = 0;
  std::string error;        // empty: the body was read (it may still be the wrong one)
  std::uint64_t bytes = 0;  // bytes read, at most size + 1
  crypto::digest sha256{};  // of those bytes
};

// What one call asks of the fleet. Cleared by the caller, appended to by the device.
struct effects {
  std::vector<outgoing> publish;
  std::vector<fetch_request> fetches;
  std::vector<note> notes;
  void clear() {
    publish.clear();
    fetches.clear();
    notes.clear();
  }
};

class device {
 public:
  // `version`: what the device runs at start. `seed` makes its jitter and fate reproducible.
  device(std::string id, const protocol::semver& version, const device_settings& settings,
         const protocol::topics& topics, std::uint64_t seed);

  // Schedules the first check.
  void start(const sim_time& now);
  // Due work: call once now >= deadline(). Always moves the deadline forward.
  void on_timer(const sim_time& now, effects& fx);
  // A message on the device's down topics (the full topic, as received).
  void on_message(const sim_time& now, std::string_view topic, std::string_view payload,
                  effects& fx);
  // The end of an HTTP download it asked for; stale results (another id) are ignored.
  void on_fetched(const sim_time& now, const fetch_result& r, effects& fx);

  std::optional<sim_clock::time_point> deadline() const noexcept { return deadline_; }
  phase current_phase() const noexcept { return phase_; }
  const std::string& id() const noexcept { return id_; }
  // The version it runs, as text.
  const std::string& version() const noexcept { return version_text_; }

 private:
  enum class fate { ok, fail, roll_back };

  void send_check(const sim_time& now, effects& fx);
  void on_offer(const sim_time& now, std::string_view payload, effects& fx);
  void on_error(const sim_time& now, std::string_view payload, effects& fx);
  void on_chunk(const sim_time& now, std::string_view rest, std::string_view payload, effects& fx);
  void begin_update(const sim_time& now, manifest m, effects& fx);
  void request_chunks(const sim_time& now, effects& fx);
  void fetch_image(const sim_time& now, effects& fx);
  void downloaded(const sim_time& now, effects& fx);
  // SHA-256 and image_sig of a fetched image; false after reporting `failed`.
  bool verify_image(const sim_time& now, const crypto::digest& digest, effects& fx);
  // The image is good: report verifying and installing, and install.
  void verified(const sim_time& now, effects& fx);
  void install_done(const sim_time& now, effects& fx);
  void reboot_done(const sim_time& now, effects& fx);
  // Back to idle, next check one interval from now.
  void rest(const sim_time& now);
  void status(effects& fx, std::string_view state, const std::string& version,
              std::optional<int> progress = std::nullopt, std::string_view error = {},
              const std::string& rollout = {});
  void progress(effects& fx);
  void fail(const sim_time& now, effects& fx, const std::string& code, const std::string& why);
  std::chrono::milliseconds jittered(std::chrono::milliseconds base);

  std::string id_;
  protocol::semver version_;
  std::string version_text_;
  const device_settings& s_;
  std::string down_prefix_;  // R/dev/D/down/
  std::string check_topic_, status_topic_, chunk_topic_;
  std::mt19937_64 rng_;

  phase phase_ = phase::idle;
  std::optional<sim_clock::time_point> deadline_;
  std::uint64_t seq_ = 0;  // for req ids

  // checking
  std::string check_req_;
  std::string nonce_;

  // an update in progress
  manifest target_;
  fate fate_ = fate::ok;
  sim_clock::time_point accepted_at_{};
  sim_clock::time_point download_started_at_{};
  std::unique_ptr<image_download> image_;
  std::uint32_t window_ = 1;
  std::string chunk_req_;
  std::uint64_t fetch_id_ = 0;     // the HTTP download in progress, 0: none
  std::uint64_t request_end_ = 0;  // first offset after the current request's chunks
  int retries_ = 0;
  int reported_progress_ = 0;
};

}  // namespace otter::sim
