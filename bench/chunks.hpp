#pragma once
// MQTT chunk delivery (PROTOCOL.md "chunk request"): n devices download at once, each asking
// for a window of `window` chunks of `chunk_len` bytes and for the next window as soon as the
// last chunk of the previous one is in (otter-sim's device does the same). A device that
// reaches the end of the image starts again from 0 until it has its share of the bytes.
#include <cstdint>
#include <string>

#include "device_pool.hpp"
#include "protocol/topics.hpp"

namespace otter::bench {

struct chunk_job {
  int devices = 1;                // the first `devices` of the pool
  std::uint64_t total_bytes = 0;  // split evenly among them (whole chunks)
  std::uint32_t chunk_len = 4096;
  std::uint32_t window = 16;
  std::string file;  // the manifest's chunk.file
  std::uint64_t image_size = 0;
};

struct chunk_point {
  int devices = 0;
  std::uint64_t bytes = 0;  // received
  double seconds = 0;       // first request to last chunk
  double mb_s = 0;          // 10^6 bytes per second
  std::int64_t requests = 0;
  std::int64_t refused = 0;  // error answers (rate_limited is retried)
  bool complete = false;     // every device got its share before the stall timeout
  std::string problem;       // why not, when not
  double server_cpu_s = 0;   // CPU the sender (otterd or the no-op responder) used meanwhile
  double broker_cpu_s = 0;
};

chunk_point run_chunks(device_pool& pool, const protocol::topics& topics, const chunk_job& job);

}  // namespace otter::bench
