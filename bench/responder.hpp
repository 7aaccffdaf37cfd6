#pragma once
// The reference the bench holds otterd against on MQTT: a responder with no work of its own,
// built on the same adapter (mqtt::client) and logged in to the same broker with the same
// service account, subscribed to the same device topics. It answers
//  - a check with an offer of the same size as a real one (padding for the signed manifest),
//    carrying the check's `req`;
//  - a chunk request with the requested chunks, taken from memory.
// So otterd's figures minus these are otterd's own work: signing, the catalog, the database
// queue, reading the image. It runs as a child process (`otter-bench responder ...`), like
// otterd, so that it does not share the devices' MQTT threads.
#include <cstdint>
#include <string>
#include <vector>

namespace otter::bench {

// The child's main: `responder --offer-size N --image-size N`; the broker and the account come
// from the OTTER_TEST_* variables. Prints "responder ready" once subscribed; exits on SIGTERM.
int run_responder(const std::vector<std::string>& args);

// An answer to check `req` of exactly `size` bytes (when size allows).
std::string padded_offer(std::string_view req, std::size_t size);

}  // namespace otter::bench
