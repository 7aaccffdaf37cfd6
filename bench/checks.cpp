#include "checks.hpp"

#include <sys/prctl.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "stats.hpp"

namespace otter::bench {
namespace {

using clk = std::chrono::steady_clock;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clk::now().time_since_epoch())
      .count();
}

// req is "b<gen>-<index>"; the answer echoes it near the front.
bool parse_req(std::string_view payload, std::uint32_t& gen, std::int64_t& index) {
  const auto at = payload.find("\"req\":\"b");
  if (at == std::string_view::npos) return false;
  const char* p = payload.data() + at + 8;
  const char* end = payload.data() + payload.size();
  auto r1 = std::from_chars(p, end, gen);
  if (r1.ec != std::errc{} || r1.ptr == end || *r1.ptr != '-') return false;
  auto r2 = std::from_chars(r1.ptr + 1, end, index);
  return r2.ec == std::errc{};
}

bool ends_with(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

}  // namespace

struct check_load::run_state {
  std::uint32_t gen = 0;
  std::int64_t count = 0;
  std::vector<std::int64_t> intended;                   // ns
  std::vector<std::int64_t> sent;                       // ns, when publish() returned
  std::unique_ptr<std::atomic<std::int64_t>[]> answer;  // ns, 0 = none yet
  std::atomic<std::int64_t> answered{0};
  std::atomic<std::int64_t> errors{0};
};

check_load::check_load(device_pool& pool, const protocol::topics& topics, std::string model,
                       std::string version)
    : pool_(pool),
      model_(std::move(model)),
      version_(std::move(version)),
      nonce_state_(std::random_device{}()) {
  for (int i = 0; i < pool_.size(); ++i) check_topics_.push_back(topics.device_check(pool_.id(i)));
  pool_.set_handler([this](int d, std::string_view t, std::string_view p) { on_message(d, t, p); });
}

check_load::~check_load() {
  pool_.set_handler(nullptr);
}

std::shared_ptr<check_load::run_state> check_load::current() {
  std::lock_guard lock(mu_);
  return state_;
}

void check_load::set_current(std::shared_ptr<run_state> s) {
  std::lock_guard lock(mu_);
  state_ = std::move(s);
}

void check_load::on_message(int, std::string_view topic, std::string_view payload) {
  const bool offer = ends_with(topic, "/down/offer");
  if (!offer && !ends_with(topic, "/down/error")) return;
  const auto t = now_ns();
  auto s = current();
  std::uint32_t gen = 0;
  std::int64_t index = 0;
  if (!s || !parse_req(payload, gen, index) || gen != s->gen || index < 0 || index >= s->count)
    return;  // a late answer from an earlier run
  if (!offer) s->errors++;
  std::int64_t none = 0;
  if (s->answer[static_cast<std::size_t>(index)].compare_exchange_strong(none, t)) s->answered++;
}

std::string check_load::check_payload(std::uint32_t gen, std::int64_t index) {
  // A fresh nonce per check (PROTOCOL.md); splitmix64 is plenty for a benchmark.
  auto next = [this] {
    std::uint64_t z = (nonce_state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  char nonce[33];
  std::snprintf(nonce, sizeof nonce, "%016llx%016llx", static_cast<unsigned long long>(next()),
                static_cast<unsigned long long>(next()));
  std::string out;
  out.reserve(128);
  out += "{\"req\":\"b";
  out += std::to_string(gen);
  out += '-';
  out += std::to_string(index);
  out += "\",\"model\":\"";
  out += model_;
  out += "\",\"version\":\"";
  out += version_;
  out += "\",\"nonce\":\"";
  out += nonce;
  out += "\"}";
  return out;
}

result<void> check_load::warm_up(std::chrono::milliseconds timeout) {
  auto s = std::make_shared<run_state>();
  s->gen = ++gen_;
  s->count = pool_.size();
  s->answer = std::make_unique<std::atomic<std::int64_t>[]>(static_cast<std::size_t>(s->count));
  set_current(s);
  for (int i = 0; i < pool_.size(); ++i)
    if (auto r =
            pool_.publish(i, check_topics_[static_cast<std::size_t>(i)], check_payload(s->gen, i));
        !r)
      return r;
  const auto deadline = clk::now() + timeout;
  while (s->answered.load() < s->count && clk::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  if (s->answered.load() < s->count)
    return make_error(errc::unavailable, std::to_string(s->count - s->answered.load()) + " of " +
                                             std::to_string(s->count) +
                                             " warm-up checks got no answer");
  if (s->errors.load() > 0)
    return make_error(errc::internal, std::to_string(s->errors.load()) +
                                          " warm-up checks were answered with an error");
  return {};
}

check_point check_load::run(int rate, double seconds, double p99_bound_ms) {
  // Sleeps of tens of microseconds: the default 50 us timer slack would blur the schedule.
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  auto s = std::make_shared<run_state>();
  s->gen = ++gen_;
  s->count = std::max<std::int64_t>(1, std::llround(rate * seconds));
  s->intended.resize(static_cast<std::size_t>(s->count));
  s->sent.resize(static_cast<std::size_t>(s->count));
  s->answer = std::make_unique<std::atomic<std::int64_t>[]>(static_cast<std::size_t>(s->count));
  // Payloads are made before the clock starts so that making them does not skew the schedule.
  std::vector<std::string> payloads;
  payloads.reserve(static_cast<std::size_t>(s->count));
  for (std::int64_t i = 0; i < s->count; ++i) payloads.push_back(check_payload(s->gen, i));
  set_current(s);

  const double period_ns = 1e9 / rate;
  const std::int64_t t0 = now_ns() + 20'000'000;
  for (std::int64_t i = 0; i < s->count; ++i) {
    const auto target =
        t0 + static_cast<std::int64_t>(std::llround(static_cast<double>(i) * period_ns));
    s->intended[static_cast<std::size_t>(i)] = target;
    const auto wait = target - now_ns();
    if (wait > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(wait));
    const int d = static_cast<int>(i % pool_.size());
    (void)pool_.publish(d, check_topics_[static_cast<std::size_t>(d)],
                        payloads[static_cast<std::size_t>(i)]);
    s->sent[static_cast<std::size_t>(i)] = now_ns();
  }
  // Whatever is still unanswered 5 s after the last intended send is lost.
  const std::int64_t end = s->intended.back();
  while (s->answered.load() < s->count && now_ns() < end + 5'000'000'000LL)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));

  check_point p;
  p.offered = rate;
  p.sent = s->count;
  p.answered = s->answered.load();
  p.errors = s->errors.load();
  std::vector<double> lat;
  lat.reserve(static_cast<std::size_t>(s->count));
  std::int64_t last = end;
  for (std::int64_t i = 0; i < s->count; ++i) {
    const auto a = s->answer[static_cast<std::size_t>(i)].load();
    if (a == 0) continue;
    last = std::max(last, a);
    lat.push_back(static_cast<double>(a - s->intended[static_cast<std::size_t>(i)]) / 1e6);
  }
  p.achieved = static_cast<double>(p.answered) / (static_cast<double>(last - t0) / 1e9);
  if (!lat.empty()) {
    p.max_ms = *std::max_element(lat.begin(), lat.end());
    p.p50_ms = percentile(lat, 50);
    p.p99_ms = percentile(lat, 99);
  }
  // Where the time went, check by check (a late send is the bench's own delay; the rest is the
  // round trip), for whoever looks into a tail: OTTER_BENCH_TRACE=<folder>.
  if (const char* dir = std::getenv("OTTER_BENCH_TRACE"); dir && *dir) {
    std::ofstream out(std::filesystem::path(dir) /
                      ("checks-" + std::to_string(rate) + "-" + std::to_string(s->gen) + ".csv"));
    out << "i,intended_ms,send_lag_ms,round_trip_ms\n";
    for (std::int64_t i = 0; i < s->count; ++i) {
      const auto k = static_cast<std::size_t>(i);
      const auto a = s->answer[k].load();
      out << i << ',' << (s->intended[k] - t0) / 1e6 << ',' << (s->sent[k] - s->intended[k]) / 1e6
          << ',' << (a ? std::to_string((a - s->sent[k]) / 1e6) : std::string("")) << '\n';
    }
  }
  p.sustained = p.answered == p.sent && p.errors == 0 && p.achieved >= 0.95 * rate &&
                p.p99_ms <= p99_bound_ms;
  p.runs_sustained = p.sustained ? 1 : 0;
  set_current(nullptr);
  return p;
}

}  // namespace otter::bench
