#include "sim/http_fetch.hpp"

#include <httplib.h>

#include <algorithm>

#include "crypto/hash.hpp"

namespace otter::sim {

result<url_parts> split_url(std::string_view url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos)
    return make_error(errc::bad_request, "not an absolute URL: " + std::string(url));
  const auto scheme = url.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https")
    return make_error(errc::bad_request, "not an http(s) URL: " + std::string(url));
  const auto path_start = url.find('/', scheme_end + 3);
  url_parts p;
  p.origin = std::string(url.substr(0, path_start));
  p.target = path_start == std::string_view::npos ? "/" : std::string(url.substr(path_start));
  if (p.origin.size() == scheme_end + 3)
    return make_error(errc::bad_request, "URL without a host: " + std::string(url));
  return p;
}

fetch_result fetch_once(const fetch_request& request, std::chrono::seconds timeout) {
  fetch_result r;
  r.id = request.id;
  auto parts = split_url(request.url);
  if (!parts) {
    r.error = parts.error().message;
    return r;
  }
  httplib::Client cli(parts->origin);
  cli.set_connection_timeout(10);
  cli.set_read_timeout(static_cast<time_t>(timeout.count()));
  crypto::sha256_stream hash;
  // One byte past the size is enough to know the body is too long; the rest is not read.
  const std::uint64_t limit = request.size + 1;
  bool over = false;
  const auto res = cli.Get(parts->target, [&](const char* data, std::size_t len) {
    const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(len, limit - r.bytes));
    hash.update(std::string_view(data, take));
    r.bytes += take;
    over = r.bytes >= limit;
    return !over;
  });
  if (!res && !over) {
    r.error = "GET " + parts->origin + ": " + httplib::to_string(res.error());
    return r;
  }
  if (res && res->status != 200) {
    r.error =
        "GET " + parts->origin + ": HTTP " + std::to_string(res->status) +
        (res->status == 403 ? " (the link was refused: expired, or for another device?)" : "");
    return r;
  }
  r.sha256 = hash.finish();
  return r;
}

http_fetcher::http_fetcher(std::size_t threads, std::chrono::seconds timeout, done_fn done)
    : timeout_(timeout), done_(std::move(done)) {
  threads = std::max<std::size_t>(1, threads);
  for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

http_fetcher::~http_fetcher() {
  stop();
}

void http_fetcher::submit(std::uint32_t index, fetch_request request) {
  std::lock_guard lock(mu_);
  if (stopping_) return;
  jobs_.push_back({index, std::move(request)});
  cv_.notify_one();
}

void http_fetcher::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    jobs_.clear();
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

void http_fetcher::run() {
  for (;;) {
    job j;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      j = std::move(jobs_.front());
      jobs_.pop_front();
    }
    auto r = fetch_once(j.request, timeout_);
    done_(j.index, std::move(r));
  }
}

}  // namespace otter::sim
