#pragma once
// Loopback ports for the servers a test starts (brokers, otterd's HTTP, nginx).
#include <cstdint>

namespace otter::test {

// A loopback port nobody listens on right now: bound to port 0 and closed again, so the kernel
// considers it free and a server with SO_REUSEADDR can take it over at once. Throws on failure.
std::uint16_t free_port();

}  // namespace otter::test
