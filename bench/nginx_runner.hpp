#pragma once
// nginx (Debian's /usr/sbin/nginx) as the HTTP reference: a generated configuration in the
// bench's work folder, `daemon off` so it is our child, its own port, one file to serve.
#include <filesystem>
#include <memory>
#include <string>

#include "support/child_process.hpp"

namespace otter::bench {

using test::child_process;

struct nginx_settings {
  std::filesystem::path dir;  // work folder: config, logs, temp paths, www/
  int port = 0;
  int workers = 2;
  bool sendfile = true;
};

class nginx_runner {
 public:
  explicit nginx_runner(nginx_settings s);
  ~nginx_runner();

  // Copies the file to serve into www/ (readable by the unprivileged workers); returns its URL
  // path ("/image.bin").
  std::string publish(const std::filesystem::path& file);
  // Writes the configuration, starts nginx, waits until the port answers (throws with the
  // error log on failure).
  void start();
  void stop();
  pid_t pid() const { return proc_ ? proc_->pid() : -1; }  // the master; workers are its children
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(s_.port); }

 private:
  nginx_settings s_;
  std::unique_ptr<child_process> proc_;
};

// /usr/sbin/nginx, or nginx from PATH; empty when there is none.
std::string nginx_binary();

}  // namespace otter::bench
