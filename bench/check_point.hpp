#pragma once
// One run of the check load at one rate: what checks.cpp measures and report.cpp prints. A
// header of its own, free of MQTT, so the rounds arithmetic is unit-tested without a broker.
#include <cstdint>

namespace otter::bench {

struct check_point {
  int offered = 0;        // checks per second asked for
  std::int64_t sent = 0;  // checks sent
  std::int64_t answered = 0;
  std::int64_t errors = 0;  // answers on the error topic
  double achieved = 0;      // answers per second, from the first intended send to the last answer
  double p50_ms = 0;
  double p99_ms = 0;
  double max_ms = 0;
  bool sustained = false;
  int runs = 1;             // rounds combined into this point (rounds.hpp)
  int runs_sustained = 0;   // ... of which sustained the rate
  double server_cpu_s = 0;  // CPU the responder (otterd or the no-op one) used meanwhile
  double broker_cpu_s = 0;
  double db_cpu_s = 0;    // the stack's PostgreSQL (otterd's writes; ~0 for the no-op one)
  double load_cpu_s = 0;  // otter-bench itself: the devices sending checks
};

}  // namespace otter::bench
