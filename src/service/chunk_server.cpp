#include "service/chunk_server.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <algorithm>
#include <cerrno>

#include "service/manifest.hpp"

namespace otter::service {

chunk_server::chunk_server(const protocol::topics& topics, image_store& images, outbox& out,
                           recorder& records, const clock& time, metrics& counters,
                           chunk_settings settings, std::string instance)
    : topics_(topics),
      images_(images),
      out_(out),
      records_(records),
      time_(time),
      counters_(counters),
      s_(settings),
      instance_(std::move(instance)) {}

chunk_server::~chunk_server() {
  stop();
  for (auto& [sha, fd] : fds_) ::close(fd);
  for (int fd : retired_fds_) ::close(fd);
}

void chunk_server::start() {
  for (int i = 0; i < std::max(1, s_.workers); ++i) workers_.emplace_back([this] { run(); });
  if (s_.grant_wait.count() > 0) reaper_ = std::thread([this] { expire_waiting(); });
}

void chunk_server::on_late_refusal(refusal_handler handler) {
  refuse_ = std::move(handler);
}

void chunk_server::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  reaper_cv_.notify_all();
  for (auto& t : workers_)
    if (t.joinable()) t.join();
  workers_.clear();
  if (reaper_.joinable()) reaper_.join();
}

void chunk_server::authorize(const std::string& device, const std::string& sha256,
                             std::uint64_t size, std::int64_t rollout,
                             std::optional<clock::time_point> offered) {
  std::vector<refusal> late;
  {
    std::lock_guard lock(mu_);
    authorize_locked(device, sha256, size, rollout, offered, late);
  }
  refuse_late(late);
}

void chunk_server::refuse_late(const std::vector<refusal>& late) {
  for (const auto& r : late)
    if (refuse_) refuse_(r.device, r.req, r.err);
}

void chunk_server::retry_waiting_locked(const std::function<bool(const waiting&)>& due,
                                        bool keep_missing, std::vector<refusal>& late) {
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (!due(*it)) {
      ++it;
      continue;
    }
    bool missing = false;
    auto r = queue_locked(it->device, it->msg, it->msg.file, missing);
    if (missing && keep_missing) {
      ++it;
      continue;
    }
    if (r)
      spdlog::debug("decision=chunk_grant_arrived device={} file={}", it->device, it->msg.file);
    else
      late.push_back({it->device, it->msg.req, std::move(r).error()});
    if (auto n = waiting_per_device_.find(it->device);
        n != waiting_per_device_.end() && --n->second == 0)
      waiting_per_device_.erase(n);
    it = waiting_.erase(it);
  }
}

void chunk_server::authorize_locked(const std::string& device, const std::string& sha256,
                                    std::uint64_t size, std::int64_t rollout,
                                    std::optional<clock::time_point> offered,
                                    std::vector<refusal>& late) {
  auto& files = grants_[device];
  auto& g = files[chunk_file_id(sha256)];
  const auto at = offered.value_or(time_.now());
  // A restore from the recorded offers, or another instance's late announcement, never takes
  // a newer offer of the same image back in time.
  if (g.sha256 != sha256 || at > g.offered) {
    // A newer offer is a new download (after a failed install, say): its progress is recorded
    // from the start again.
    g = grant{};
    g.sha256 = sha256;
    g.size = size;
    g.rollout = rollout;
    g.offered = at;
  }
  // A device holds few grants: drop expired ones whenever it gets a new one.
  for (auto it = files.begin(); it != files.end();)
    it = g.offered - it->second.offered > s_.offer_validity ? files.erase(it) : std::next(it);
  if (waiting_.empty()) return;
  // Requests that waited for this grant go ahead now (or get their real refusal: range, caps).
  const auto file = chunk_file_id(sha256);
  retry_waiting_locked([&](const waiting& w) { return w.device == device && w.msg.file == file; },
                       true, late);
}

std::uint64_t chunk_server::inflight_bytes() const {
  std::lock_guard lock(mu_);
  return total_inflight_;
}

result<void> chunk_server::request(const std::string& device,
                                   const protocol::chunk_request_msg& m) {
  if (m.len > s_.max)
    return make_error(errc::bad_request, "\"len\" " + std::to_string(m.len) +
                                             " is above the manifest's chunk.max " +
                                             std::to_string(s_.max));
  if (m.count > s_.window)
    return make_error(errc::bad_request, "\"count\" " + std::to_string(m.count) +
                                             " is above the manifest's chunk.window " +
                                             std::to_string(s_.window));
  std::string file = m.file;
  std::transform(file.begin(), file.end(), file.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::lock_guard lock(mu_);
  bool missing = false;
  auto r = queue_locked(device, m, file, missing);
  if (r || !missing || s_.grant_wait.count() <= 0) return r;
  if (waiting_.size() >= s_.max_waiting) return r;
  if (auto n = waiting_per_device_.find(device);
      n != waiting_per_device_.end() && n->second >= s_.max_waiting_per_device)
    return make_error(errc::rate_limited,
                      "too many chunk requests wait for this device's offer; wait for their "
                      "answers, then ask again");
  ++waiting_per_device_[device];
  // Perhaps another instance made the offer: its grant is on the way.
  auto held = m;
  held.file = file;
  waiting_.push_back({device, std::move(held), std::chrono::steady_clock::now() + s_.grant_wait});
  spdlog::debug("decision=chunk_wait_for_grant device={} file={}", device, file);
  return {};
}

result<void> chunk_server::queue_locked(const std::string& device,
                                        const protocol::chunk_request_msg& m,
                                        const std::string& file, bool& missing) {
  missing = false;
  auto d = grants_.find(device);
  const grant* g = nullptr;
  if (d != grants_.end()) {
    auto f = d->second.find(file);
    if (f != d->second.end()) g = &f->second;
  }
  // Whether or not the file exists: a device learns nothing about files it was not offered.
  if (!g) {
    missing = true;
    return make_error(errc::forbidden, "file " + m.file + " was not offered to this device");
  }
  if (time_.now() - g->offered > s_.offer_validity) {
    missing = true;
    return make_error(errc::forbidden, "the offer of file " + m.file + " expired; check again");
  }
  if (m.offset >= g->size)
    return make_error(errc::range, "\"offset\" " + std::to_string(m.offset) +
                                       " is at or past the end of the file (" +
                                       std::to_string(g->size) + " bytes)");
  const std::uint64_t remaining = g->size - m.offset;
  const std::uint64_t bytes = std::min<std::uint64_t>(remaining, std::uint64_t(m.len) * m.count);
  if (stopping_) return make_error(errc::unavailable, "the service is stopping; ask again shortly");
  // Looked up, not created: a refused device leaves no entry behind.
  const auto it = device_inflight_.find(device);
  const std::uint64_t mine = it == device_inflight_.end() ? 0 : it->second;
  if (mine + bytes > s_.device_inflight_cap)
    return make_error(errc::rate_limited,
                      "too many chunks requested and not yet sent; wait for them, then ask again");
  if (total_inflight_ + bytes > s_.total_inflight_cap)
    return make_error(errc::rate_limited, "the server is busy sending; ask again shortly");
  device_inflight_[device] = mine + bytes;
  total_inflight_ += bytes;
  queue_.push_back(
      job{device, file, g->sha256, g->size, m.offset, m.len, m.count, bytes, g->rollout, m.req});
  cv_.notify_one();
  return {};
}

void chunk_server::expire_waiting() {
  for (;;) {
    std::vector<refusal> late;
    {
      std::unique_lock lock(mu_);
      reaper_cv_.wait_for(lock, std::chrono::milliseconds(20), [&] { return stopping_; });
      if (stopping_) return;
      const auto now = std::chrono::steady_clock::now();
      retry_waiting_locked([&](const waiting& w) { return w.until <= now; }, false, late);
    }
    refuse_late(late);
  }
}

void chunk_server::run() {
  for (;;) {
    job j;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      j = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      serve(j);
    } catch (const std::exception& e) {
      spdlog::error("decision=chunk_failed device={} file={} error=\"{}\"", j.device, j.file,
                    e.what());
    }
    std::lock_guard lock(mu_);
    auto it = device_inflight_.find(j.device);
    if (it != device_inflight_.end()) {
      it->second -= std::min(it->second, j.bytes);
      if (it->second == 0) device_inflight_.erase(it);
    }
    total_inflight_ -= std::min(total_inflight_, j.bytes);
  }
}

int chunk_server::open_image(const std::string& sha256, std::uint64_t size) {
  std::lock_guard lock(fd_mu_);
  auto it = fds_.find(sha256);
  if (it != fds_.end()) return it->second;
  const int fd = ::open(images_.path_of(sha256).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || static_cast<std::uint64_t>(st.st_size) < size) {
    ::close(fd);
    return -1;
  }
  fds_[sha256] = fd;
  return fd;
}

void chunk_server::retire_image(const std::string& sha256) {
  std::lock_guard lock(fd_mu_);
  auto it = fds_.find(sha256);
  if (it == fds_.end()) return;
  retired_fds_.push_back(it->second);
  fds_.erase(it);
}

bool chunk_server::stopping() const {
  std::lock_guard lock(mu_);
  return stopping_;
}

void chunk_server::serve(const job& j) {
  const int fd = open_image(j.sha256, j.size);
  if (fd < 0) {
    spdlog::error(
        "decision=chunk_failed device={} file={} reason=\"image file missing or shorter than "
        "its release says\"",
        j.device, j.file);
    // Answered and recorded like any late refusal, with the request's req.
    refuse_late({refusal{j.device, j.req, make_error(errc::internal, "the image cannot be read")}});
    return;
  }
  std::string buf;
  std::uint64_t offset = j.offset;
  for (std::uint32_t i = 0; i < j.count && offset < j.size; ++i) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(j.len, j.size - offset));
    buf.resize(n);
    std::size_t got = 0;
    while (got < n) {
      const ssize_t r = ::pread(fd, buf.data() + got, n - got, static_cast<off_t>(offset + got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        // The file shrank since it was opened (damaged on disk): the device hears of it, what
        // was sent counts, and the next request opens the file again.
        spdlog::error(
            "decision=chunk_failed device={} file={} offset={} reason=\"short read from the "
            "image file\"",
            j.device, j.file, offset + got);
        retire_image(j.sha256);
        refuse_late(
            {refusal{j.device, j.req, make_error(errc::internal, "the image cannot be read")}});
        record_progress(j, offset);
        return;
      }
      got += static_cast<std::size_t>(r);
    }
    // Stopping: what has room goes out, the rest is refused at once (a lost broker would
    // otherwise hold the shutdown for room_wait per queued request).
    if (!out_.wait_for_room(stopping() ? std::chrono::milliseconds(0) : s_.room_wait)) {
      spdlog::warn(
          "decision=chunk_gave_up device={} file={} offset={} reason=\"the broker is "
          "not taking messages\"",
          j.device, j.file, offset);
      refuse_late({refusal{j.device, j.req,
                           make_error(errc::unavailable,
                                      "the server cannot send chunks right now; ask again for "
                                      "the ones missing from offset " +
                                          std::to_string(offset))}});
      break;
    }
    out_.publish(topics_.chunk(j.device, j.file, offset), buf, 1, false);
    offset += n;
  }
  record_progress(j, offset);
}

void chunk_server::record_progress(const job& j, std::uint64_t end) {
  // 0 is the start, 4 the end; an event for each one reached for the first time.
  const int reached = end >= j.size ? 4 : static_cast<int>((end * 4) / j.size);
  int from = 0;
  {
    std::lock_guard lock(mu_);
    auto d = grants_.find(j.device);
    if (d == grants_.end()) return;
    auto f = d->second.find(j.file);
    if (f == d->second.end() || reached <= f->second.quarter_recorded) return;
    from = f->second.quarter_recorded + 1;
    f->second.quarter_recorded = reached;
  }
  store::record_set set;
  for (int q = from; q <= reached; ++q) {
    store::event_record e;
    e.at = time_.now();
    e.kind = "chunk";
    e.device = j.device;
    e.rollout = j.rollout;
    e.instance = instance_;
    e.data = {{"file", j.file}, {"progress", q * 25}, {"size", j.size}};
    set.events.push_back(std::move(e));
  }
  if (!records_.submit(std::move(set))) counters_.unavailable++;
  spdlog::info("decision=download_progress device={} file={} progress={}", j.device, j.file,
               reached * 25);
}

}  // namespace otter::service
