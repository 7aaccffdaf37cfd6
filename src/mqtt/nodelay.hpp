#pragma once
// Paho C 1.3.12 never sets TCP_NODELAY and has no hook that hands out its sockets, so a QoS 1
// request/answer waits on Nagle + delayed ACK (~90 ms on loopback instead of ~0.2 ms). What is
// left is the process's descriptor table: once a connection is up, find the TCP sockets whose
// peer is a known broker and set the option on them.
//
// Syscalls cost about a microsecond here and a simulator holds thousands of connections, so a
// full scan per connect would be quadratic. Sockets already tuned are remembered by descriptor
// and skipped without a syscall; since a descriptor number is reused after close, every closed
// broker connection must be reported (forget_closed), which makes the next scan a full one.
// Thread-safe; all state is process-wide.
#include <cstddef>
#include <string_view>

namespace otter::mqtt::nodelay {

// Counted interest in sockets to the broker of `server_uri` ("tcp://host:port", "ssl://...",
// "[::1]" style IPv6 hosts). The host name is resolved (blocking) on the first add. Every add
// needs one remove.
void add_broker(std::string_view server_uri);
void remove_broker(std::string_view server_uri);

// Sets TCP_NODELAY on every socket of this process that is connected to a registered broker and
// lacks it. Returns how many sockets it changed. Meant to be called when a connection comes up.
std::size_t tune();

// What the scans cost, for tests and diagnostics.
struct stats {
  std::size_t full_scans = 0;
  std::size_t incremental_scans = 0;
  std::size_t probes = 0;  // descriptors examined with at least one syscall
  std::size_t tuned = 0;   // sockets that got TCP_NODELAY
};
stats current_stats();

// A broker connection was closed (lost, refused, or disconnected): its descriptor number may be
// reused, so the next tune() re-examines every descriptor instead of trusting what it knows.
void forget_closed();

}  // namespace otter::mqtt::nodelay
