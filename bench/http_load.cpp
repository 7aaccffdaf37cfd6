// httplib's client reads the socket in CPPHTTPLIB_RECV_BUFSIZ pieces, 4 KiB by default: a
// syscall per 4 KiB makes the client, not the server, the bottleneck on loopback. This is the
// only file of the bench that includes httplib, so the setting is the bench's own.
#define CPPHTTPLIB_RECV_BUFSIZ size_t(256u * 1024u)
#include "http_load.hpp"

#include <httplib.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace otter::bench {
namespace {

using clk = std::chrono::steady_clock;

}  // namespace

bool split_http_url(const std::string& url, std::string& host, int& port, std::string& target) {
  const std::string scheme = "http://";
  if (!url.starts_with(scheme)) return false;
  const auto slash = url.find('/', scheme.size());
  const auto authority = url.substr(scheme.size(), slash - scheme.size());
  target = slash == std::string::npos ? "/" : url.substr(slash);
  const auto colon = authority.rfind(':');
  if (colon == std::string::npos) {
    host = authority;
    port = 80;
    return !host.empty();
  }
  host = authority.substr(0, colon);
  const auto p = authority.substr(colon + 1);
  auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
  return ec == std::errc{} && ptr == p.data() + p.size() && !host.empty();
}

std::string http_probe(const http_job& job) {
  httplib::Client cli(job.host, job.port);
  std::uint64_t got = 0;
  auto res = cli.Get(job.target.c_str(), [&](const char*, std::size_t n) {
    got += n;
    return true;
  });
  if (!res) return "GET " + job.target + " failed: " + httplib::to_string(res.error());
  if (res->status != 200) return "GET " + job.target + " answered " + std::to_string(res->status);
  if (got != job.expected_size)
    return "GET " + job.target + " gave " + std::to_string(got) + " bytes, expected " +
           std::to_string(job.expected_size);
  return {};
}

http_point run_http(const http_job& job) {
  std::atomic<std::uint64_t> bytes{0};
  std::atomic<std::int64_t> downloads{0}, errors{0};
  std::mutex err_mu;
  std::string first_error;
  const auto start = clk::now();
  const auto deadline =
      start + std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(job.seconds));
  std::vector<std::thread> threads;
  for (int c = 0; c < job.clients; ++c) {
    threads.emplace_back([&] {
      httplib::Client cli(job.host, job.port);
      cli.set_keep_alive(true);
      std::uint64_t mine = 0;
      while (clk::now() < deadline) {
        std::uint64_t got = 0;
        bool cut = false;
        auto res = cli.Get(job.target.c_str(), [&](const char*, std::size_t n) {
          if (clk::now() >= deadline) {
            cut = true;
            return false;
          }
          got += n;
          return true;
        });
        mine += got;
        if (cut) break;
        if (res && res->status == 200 && got == job.expected_size) {
          downloads++;
          continue;
        }
        errors++;
        std::lock_guard lock(err_mu);
        if (first_error.empty())
          first_error = !res ? httplib::to_string(res.error())
                             : "status " + std::to_string(res->status) + ", " +
                                   std::to_string(got) + " bytes";
      }
      bytes += mine;
    });
  }
  for (auto& t : threads) t.join();
  http_point p;
  p.clients = job.clients;
  p.bytes = bytes.load();
  p.seconds = std::chrono::duration<double>(deadline - start).count();
  p.mb_s = static_cast<double>(p.bytes) / p.seconds / 1e6;
  p.downloads = downloads.load();
  p.errors = errors.load();
  p.first_error = first_error;
  return p;
}

}  // namespace otter::bench
