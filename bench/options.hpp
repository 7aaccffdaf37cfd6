#pragma once
// otter-bench's command line and the stack it runs against.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "protocol/error.hpp"

namespace otter::bench {

struct bench_options {
  // checks: open loop at each rate in turn, for otterd and for the no-op responder
  // Steps of 250 (6-12 %) where the sustained rates fall: the ratio's resolution.
  std::vector<int> check_rates{500,  1000, 1500, 2000, 2250, 2500, 2750, 3000,
                               3250, 3500, 3750, 4000, 4500, 5000, 6000};
  int check_devices = 200;
  double check_seconds = 3;
  int check_rounds = 3;      // sweeps per side, alternating; a rate is sustained in most of them
  double p99_bound_ms = 50;  // a rate is "sustained" only with p99 below this
  // chunks: 4 KiB chunks, window 16; `chunk_total_mib` per run, split among the devices
  std::vector<int> chunk_devices{1, 10, 100};
  std::uint64_t chunk_total_mib = 64;
  std::uint32_t chunk_len = 4096;
  std::uint32_t window = 16;
  // http: each client downloads the image over and over for `http_seconds`
  std::vector<int> http_clients{1, 20};
  double http_seconds = 4;
  int nginx_workers = 2;  // see the README: what is fair against otterd's HTTP threads
  bool nginx_sendfile = true;
  int http_port = 18890;   // otterd's HTTP
  int nginx_port = 18891;  // nginx
  // what to run
  bool run_checks = true;
  bool run_chunks = true;
  bool run_http = true;
  std::uint64_t image_mib = 16;      // the stack's broker takes uploads of 16 MiB at most
  std::string otterd = OTTERD_PATH;  // e.g. another build of otterd, to compare a change
  // OTTER_* settings for otterd over the bench's own (--otterd-env), e.g. OTTER_EVENTS=none
  std::vector<std::pair<std::string, std::string>> otterd_env;
  bool json = false;     // the results as JSON on stdout instead of the table
  std::string json_out;  // also write them as JSON to this file
  bool keep = false;     // keep the work folder (logs, configs) for a look afterwards
  bool help = false;
};

extern const char* const kUsage;

// args without the program name; errors are bad_request naming the option.
result<bench_options> parse_options(const std::vector<std::string>& args);

// What scripts/stack.sh exports (OTTER_TEST_*).
struct stack_env {
  std::string mqtt_url;
  std::string service_user;
  std::string service_password;
  std::string operator_password;
  std::string db_url;
};
// unavailable, naming the missing variables and how to get them, when one is unset.
result<stack_env> stack_from_environment();

}  // namespace otter::bench
