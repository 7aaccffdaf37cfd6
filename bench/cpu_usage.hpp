#pragma once
// CPU time of the processes under test, from /proc. On a shared 2-core machine wall-clock
// rates move with whatever else runs; the CPU a server spends per unit of work does not, so
// the bench reports both.
#include <sys/types.h>

#include <filesystem>
#include <vector>

namespace otter::bench {

// User + system seconds of `pid` (all its threads), plus those of its child processes when
// `with_children` (nginx's workers, PostgreSQL's backends), living or reaped. 0 when the process
// is gone.
double cpu_seconds(pid_t pid, bool with_children = false);

// The broker of the stack: the pid in <OTTER_TEST_STACK_DIR>/mosquitto/mosquitto.pid, or -1.
pid_t stack_broker_pid();
// The stack's postmaster: line 1 of <OTTER_TEST_STACK_DIR>/pg/postmaster.pid, or -1. Its
// backends are its children.
pid_t stack_db_pid();

// Reads a set of processes before and after a run.
class cpu_meter {
 public:
  // (pid, with_children) pairs; a pid <= 0 is skipped.
  void watch(pid_t pid, bool with_children = false);
  void start();
  double seconds() const;  // since start()

 private:
  struct entry {
    pid_t pid;
    bool children;
  };
  double total() const;
  std::vector<entry> procs_;
  double at_start_ = 0;
};

}  // namespace otter::bench
