#!/usr/bin/env bash
# The benchmark of issue #3 (README "Performance"): install what is missing, build a Release
# otterd and otter-bench in build-bench, start a stack of its own, run the bench, stop the
# stack again. Not part of CI: it takes minutes and wants a quiet machine.
#
#   scripts/bench.sh [otter-bench options]     e.g. scripts/bench.sh --phases checks --json
#
#   OTTER_BENCH_BUILD_DIR  build folder (default build-bench, relative to the checkout)
#   OTTER_STACK_DIR        the stack's folder (default <checkout>/.stack-bench: not the tests'
#                          .stack-test nor the demo's .stack, so it disturbs neither)
#   OTTER_STACK_MQTT_PORT, OTTER_STACK_PG_PORT   its ports (default 18870 and 15472)
#
# A stack this script starts is stopped when it exits; one that was already running (same
# OTTER_STACK_DIR) is used and left running. Exit status: otter-bench's.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"
BUILD_DIR=${OTTER_BENCH_BUILD_DIR:-build-bench}
export OTTER_STACK_DIR=${OTTER_STACK_DIR:-$ROOT/.stack-bench}
export OTTER_STACK_MQTT_PORT=${OTTER_STACK_MQTT_PORT:-18870}
export OTTER_STACK_PG_PORT=${OTTER_STACK_PG_PORT:-15472}

for arg in "$@"; do
  if [[ "$arg" == "-h" || "$arg" == "--help" ]]; then
    echo "scripts/bench.sh: builds $BUILD_DIR, starts a stack in $OTTER_STACK_DIR, then runs:"
    echo
  fi
done

echo "== setup"
bash scripts/setup.sh
# nginx is the HTTP reference; only the bench needs it, so it is not in setup.sh (CI).
if [[ "$(dpkg-query -W -f='${db:Status-Status}' nginx-light 2>/dev/null || true)" != "installed" &&
  ! -x /usr/sbin/nginx ]]; then
  echo "bench: installing nginx-light"
  SUDO=()
  [[ $(id -u) -eq 0 ]] || SUDO=(sudo)
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends nginx-light
fi

echo "== build ($BUILD_DIR, Release)"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DOTTER_SANITIZE=OFF \
  -DOTTER_WERROR=OFF -DOTTER_BUILD_TESTS=OFF -DOTTER_BUILD_BENCH=ON >/dev/null
cmake --build "$BUILD_DIR" --target otter-bench -j"$(nproc)"

echo "== stack ($OTTER_STACK_DIR)"
# shellcheck source=scripts/stack-for-run.sh
source scripts/stack-for-run.sh
stack_for_this_run

echo "== bench (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
rc=0
"$BUILD_DIR/bench/otter-bench" "$@" || rc=$?
exit "$rc"
