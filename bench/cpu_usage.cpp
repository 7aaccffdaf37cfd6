#include "cpu_usage.hpp"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace otter::bench {
namespace {

// Fields after the command name (which may contain spaces) in /proc/<pid>/stat. `reaped`: the
// CPU of children it has waited for (cutime + cstime).
bool read_stat(const std::filesystem::path& p, pid_t& ppid, double& cpu, double* reaped = nullptr) {
  std::ifstream in(p);
  std::string line;
  if (!std::getline(in, line)) return false;
  const auto close = line.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream ss(line.substr(close + 2));
  std::string state;
  long long v = 0, utime = 0, stime = 0;
  ss >> state >> v;
  ppid = static_cast<pid_t>(v);
  for (int field = 5; field <= 13; ++field) ss >> v;  // pgrp .. cmajflt
  long long cutime = 0, cstime = 0;
  ss >> utime >> stime >> cutime >> cstime;
  if (!ss) return false;
  const auto tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
  cpu = static_cast<double>(utime + stime) / tick;
  if (reaped) *reaped = static_cast<double>(cutime + cstime) / tick;
  return true;
}

}  // namespace

double cpu_seconds(pid_t pid, bool with_children) {
  if (pid <= 0) return 0;
  pid_t ppid = 0;
  double total = 0;
  double reaped = 0;
  if (!read_stat("/proc/" + std::to_string(pid) + "/stat", ppid, total, &reaped)) return 0;
  if (!with_children) return total;
  // A child that exits mid-run (a PostgreSQL backend of a stopped otterd) must not take its CPU
  // out of the sum: once reaped, it is counted in the parent's cutime + cstime instead.
  total += reaped;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const auto name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    double cpu = 0;
    if (read_stat(e.path() / "stat", ppid, cpu) && ppid == pid) total += cpu;
  }
  return total;
}

namespace {

// The first number in <OTTER_TEST_STACK_DIR>/<file>, or -1.
pid_t stack_pid(const char* file) {
  const char* dir = std::getenv("OTTER_TEST_STACK_DIR");
  if (!dir || !*dir) return -1;
  std::ifstream in(std::filesystem::path(dir) / file);
  long pid = -1;
  if (!(in >> pid)) return -1;
  return static_cast<pid_t>(pid);
}

}  // namespace

pid_t stack_broker_pid() {
  return stack_pid("mosquitto/mosquitto.pid");
}

pid_t stack_db_pid() {
  return stack_pid("pg/postmaster.pid");
}

void cpu_meter::watch(pid_t pid, bool with_children) {
  if (pid > 0) procs_.push_back({pid, with_children});
}

double cpu_meter::total() const {
  double t = 0;
  for (const auto& p : procs_) t += cpu_seconds(p.pid, p.children);
  return t;
}

void cpu_meter::start() {
  at_start_ = total();
}

double cpu_meter::seconds() const {
  return total() - at_start_;
}

}  // namespace otter::bench
