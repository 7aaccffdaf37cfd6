#pragma once
// Command line of otter-device-host.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace otter::device_host {

struct options {
  std::string mqtt_url = "tcp://localhost:1883";
  std::string user, password;  // optional; the local stack lets devices connect anonymously
  std::string id, model, version;
  std::string pubkey_file;
  std::string release_key_file;
  std::string root = "ota/v1";
  std::uint32_t chunk = 1024;
  std::uint32_t window = 4;
  std::string slot_file;
  std::string state_dir;
  int timeout_s = 120;
  int chunk_timeout_ms = 3000;
  std::uint64_t stop_after = 0;  // 0: never; else "lose power" after this many bytes
  std::vector<std::pair<std::string, std::string>> attrs;
};

extern const char* const kUsage;

// The parsed options, or an error message.
std::optional<options> parse_options(int argc, char** argv, std::string& error);

}  // namespace otter::device_host
