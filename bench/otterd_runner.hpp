#pragma once
// otterd as the bench runs it: the binary built beside the bench (OTTERD_PATH), a scratch
// database on the stack's PostgreSQL, a signing key made by `otterd keygen`, the stack's
// operator accounts, HTTP download on. It may be started and stopped several times (only one
// responder may answer on the device topics at a time); database and data stay.
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "crypto/ec_key.hpp"
#include "options.hpp"
#include "support/child_process.hpp"
#include "support/test_db.hpp"

namespace otter::bench {

using test::child_process;
using test::run_command;
using test::scratch_db;

class otterd_runner {
 public:
  // Creates the database and the key (throws std::runtime_error saying what failed).
  // `extra_env`: OTTER_* settings over the bench's own (--otterd-env).
  otterd_runner(const stack_env& env, std::string binary, std::filesystem::path dir, int http_port,
                std::vector<std::pair<std::string, std::string>> extra_env = {});
  ~otterd_runner();

  // Starts otterd and waits until it serves and is connected (throws with its log's tail).
  void start();
  // SIGTERM and wait; throws if it does not exit cleanly.
  void stop();
  bool running() const { return proc_ != nullptr; }
  pid_t pid() const { return proc_ ? proc_->pid() : -1; }

  const crypto::ec_key& key() const { return *key_; }
  std::string log_tail() const;
  std::string http_base() const { return "http://127.0.0.1:" + std::to_string(http_port_); }
  const std::filesystem::path& data_dir() const { return data_dir_; }

 private:
  std::map<std::string, std::string> env() const;

  stack_env stack_;
  std::string binary_;
  std::filesystem::path dir_;
  std::filesystem::path data_dir_;
  std::filesystem::path key_path_;
  int http_port_;
  std::vector<std::pair<std::string, std::string>> extra_env_;
  std::unique_ptr<scratch_db> db_;
  std::optional<crypto::ec_key> key_;
  std::unique_ptr<child_process> proc_;
  int starts_ = 0;
};

}  // namespace otter::bench
