#pragma once
// What a fuzz target asserts: a broken invariant aborts, so libFuzzer (or the corpus replay
// under the sanitizers) reports the input that broke it.
#include <cstdio>
#include <cstdlib>

#define OTTER_FUZZ_CHECK(cond)                                                          \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                     \
    }                                                                                   \
  } while (0)
