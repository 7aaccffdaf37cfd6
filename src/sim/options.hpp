#pragma once
// otter-sim's command line.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "protocol/error.hpp"

namespace otter::sim {

struct sim_options {
  int devices = 0;
  std::string model;
  std::string version;
  std::string pubkey_file;
  std::string mqtt_url = "tcp://127.0.0.1:1883";
  std::string root = "ota/v1";
  std::string prefix = "sim";
  nlohmann::json attrs;  // object, or null when not given
  double interval_s = 30;
  std::optional<std::uint32_t> chunk;
  std::optional<std::uint32_t> window;
  double fail_rate = 0;
  std::optional<std::string> until_version;
  double timeout_s = 600;
  bool json_summary = false;
  bool download = true;
  bool via_http = false;  // --via http: fetch the manifest's url instead of MQTT chunks
  std::string release_key_file;
  int workers = 0;                  // 0: from the number of CPUs
  std::string log_level = "error";  // thousands of clients: warnings would flood
  bool help = false;
};

extern const char* const kUsage;

// args without the program name. `env_mqtt_url`: OTTER_MQTT_URL or null. Errors are
// bad_request with a message that names the option and what it wants.
result<sim_options> parse_options(const std::vector<std::string>& args, const char* env_mqtt_url);

// The id of device `index` of a fleet of `count`: P-0000, P-0001, ... (wider past 10000).
std::string device_id(const std::string& prefix, int index, int count);

}  // namespace otter::sim
