#!/usr/bin/env bash
# The project's test command (README, .ci/run): install what is missing, build with the
# sanitizers and -Werror, start the local stack (scripts/stack.sh), run every test.
#
#   OTTER_BUILD_DIR    build folder (default build-ci, relative to the checkout)
#   OTTER_TEST_TIMEOUT per-test timeout in seconds (default 300)
#   OTTER_FUZZ_SECONDS how long each libFuzzer target runs after the tests (default 30; 0 skips
#                      the clang build in build-fuzz; the sanitizer build replays the seeds
#                      either way)
#   OTTER_STACK_DIR    the stack's folder (default <checkout>/.stack-test, ports 18840 and
#                      15442: not the demo's .stack, whose otterd would answer the test
#                      devices' checks too); OTTER_STACK_MQTT_PORT, OTTER_STACK_PG_PORT: see
#                      scripts/stack.sh
#   extra arguments are passed to ctest (e.g. scripts/test.sh -L unit, -R semver)
#
# A stack this script starts is stopped when it exits; one that was already running is
# left running. Exit status: the build's on a build failure, else ctest's.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"
BUILD_DIR=${OTTER_BUILD_DIR:-build-ci}
TIMEOUT=${OTTER_TEST_TIMEOUT:-300}
JOBS=$(nproc)
# A stack of the tests' own: every test device shares the topic root with the demo's, so an
# otterd left running by scripts/demo.sh on .stack would answer their checks as well.
if [[ -z "${OTTER_STACK_DIR:-}" ]]; then
  export OTTER_STACK_DIR="$ROOT/.stack-test"
  export OTTER_STACK_MQTT_PORT=${OTTER_STACK_MQTT_PORT:-18840}
  export OTTER_STACK_PG_PORT=${OTTER_STACK_PG_PORT:-15442}
fi

echo "== setup"
bash scripts/setup.sh

echo "== build ($BUILD_DIR)"
cmake -S . -B "$BUILD_DIR" -G Ninja \
  -DOTTER_SANITIZE=ON -DOTTER_WERROR=ON -DCMAKE_BUILD_TYPE=Debug
cmake --build "$BUILD_DIR" -j"$JOBS"

# Node-RED for tests/integration/node_red_test.cpp: the versions locked in
# tests/dashboards/node-red, from npm, into the build folder; again only when the lock changed.
echo "== node-red ($BUILD_DIR/node-red)"
NODE_RED_DIR="$ROOT/$BUILD_DIR/node-red"
LOCK=tests/dashboards/node-red/package-lock.json
if [[ ! -d "$NODE_RED_DIR/node_modules/node-red" ]] || ! cmp -s "$LOCK" "$NODE_RED_DIR/package-lock.json"; then
  rm -rf "$NODE_RED_DIR"
  mkdir -p "$NODE_RED_DIR"
  cp tests/dashboards/node-red/package.json "$LOCK" "$NODE_RED_DIR/"
  if ! (cd "$NODE_RED_DIR" && npm ci --no-audit --no-fund --loglevel=error ||
        (sleep 5 && npm ci --no-audit --no-fund --loglevel=error)); then
    echo "test: npm ci of $LOCK failed (is registry.npmjs.org reachable?)" >&2
    exit 1
  fi
fi
export OTTER_NODE_RED_DIR="$NODE_RED_DIR"

echo "== stack"
# shellcheck source=scripts/stack-for-run.sh
source scripts/stack-for-run.sh
stack_for_this_run

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

echo "== tests"
rc=0
ctest --test-dir "$BUILD_DIR" --output-on-failure --timeout "$TIMEOUT" \
  --parallel "$JOBS" --no-tests=error "$@" || rc=$?

# libFuzzer on every parser of network input (tests/fuzz), for a bounded time. Only for a full
# run: with ctest arguments (a selection) the caller asked for something narrower.
FUZZ_SECONDS=${OTTER_FUZZ_SECONDS:-30}
if [[ $# -eq 0 && "$FUZZ_SECONDS" != 0 ]]; then
  echo "== fuzz (build-fuzz, ${FUZZ_SECONDS} s per target)"
  fuzz_rc=0
  cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DOTTER_FUZZ=ON -DOTTER_WERROR=ON -DOTTER_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=None \
    -DCMAKE_C_FLAGS="-O1 -gline-tables-only" -DCMAKE_CXX_FLAGS="-O1 -gline-tables-only" \
    -DOTTER_FUZZ_SECONDS="$FUZZ_SECONDS" >/dev/null || fuzz_rc=$?
  if [[ $fuzz_rc -eq 0 ]]; then
    cmake --build build-fuzz -j"$JOBS" --target otter_fuzz || fuzz_rc=$?
  fi
  if [[ $fuzz_rc -eq 0 ]]; then
    ctest --test-dir build-fuzz -L fuzz --output-on-failure --parallel "$JOBS" \
      --timeout $((FUZZ_SECONDS * 3 + 60)) || fuzz_rc=$?
  fi
  if [[ $fuzz_rc -ne 0 ]]; then
    echo "fuzz: FAILED; a crashing input is in build-fuzz/tests/fuzz/crashes/ (replay it with"
    echo "      build-fuzz/tests/fuzz/otter_fuzz_<target> FILE, then add it to tests/fuzz/corpus/)"
    [[ $rc -eq 0 ]] && rc=$fuzz_rc
  fi
fi
exit "$rc"
