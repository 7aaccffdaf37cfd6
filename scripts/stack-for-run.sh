# shellcheck shell=bash
# Sourced (not run) by scripts that need the stack for one run of theirs: test.sh, bench.sh.
#
#   stack_for_this_run    uses a stack already running in ${OTTER_STACK_DIR:-.stack} and leaves
#                         it running, or starts one and stops it when the script exits; then
#                         exports the stack's variables (its env file).
#
# Expects to be called from the checkout's root. Sets the EXIT trap when it starts the stack.
stack_for_this_run() {
  if bash scripts/stack.sh status >/dev/null 2>&1; then
    echo "stack already running: using it and leaving it running"
  else
    # Armed before start, so that a half-started stack is stopped too.
    trap 'echo "== stack stop"; bash scripts/stack.sh stop || true' EXIT
    bash scripts/stack.sh start
  fi
  set -a
  # shellcheck source=/dev/null
  source "${OTTER_STACK_DIR:-.stack}/env"
  set +a
}
