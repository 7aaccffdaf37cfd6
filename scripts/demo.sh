#!/usr/bin/env bash
# The whole system on one machine: the local stack (Mosquitto, PostgreSQL), otterd, and a
# simulated fleet of 100 devices taking an update through a 10 % canary widened to 100 %.
#
#   scripts/demo.sh          run the demo, then keep otterd running until Ctrl-C
#   scripts/demo.sh --once   stop after the summary (otterd, and the stack if this run started it)
#
# Environment:
#   DEMO_DOWNLOAD   auto (default): ask otterd once whether it serves chunk downloads, and run
#                   the fleet with otter-sim --no-download if it answers `unavailable`;
#                   1: devices always download the image; 0: they never do
#   DEMO_DEVICES    fleet size (default 100)
#
# Everything it makes lives in the git-ignored .demo/ folder: the signing key (signing.pem,
# public half signing.pub), otterd's image store (data/) and log (otterd.log), the firmware
# images and the fleet's JSON summary. It uses a database `otter_demo` on the stack, kept
# between runs; each run adds a new release (1.1.0, then 1.1.1, ...) and a new fleet (device
# ids sim-0000.., then sim1-0000..), and cancels the rollouts an earlier run left active.
# Operator commands go over MQTT as operator admin1 (mosquitto_pub/sub, so that each
# command is plain to read; build/otterctl sends the same ones).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"

ONCE=0
for arg in "$@"; do
  case "$arg" in
    --once) ONCE=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "demo: unknown argument '$arg' (usage: scripts/demo.sh [--once])" >&2
      exit 2
      ;;
  esac
done

DEMO="$ROOT/.demo"
BUILD="$ROOT/build"
MODEL=esp32-devkitc
FROM_VERSION=1.0.0
DEVICES=${DEMO_DEVICES:-100}
DOWNLOAD=${DEMO_DOWNLOAD:-auto}
OPERATOR=admin1
TOPIC_ROOT=ota/v1
INSTANCE=demo

OTTERD_PID=""
SIM_PID=""
STACK_STARTED=0

# On a terminal, a message first clears otter-sim's live status line (it rewrites it with \r).
if [[ -t 1 ]]; then
  CLEAR=$'\r\033[K' BOLD=$'\033[1m' PLAIN=$'\033[0m'
else
  CLEAR="" BOLD="" PLAIN=""
fi
say() { printf '%s%s== %s%s\n' "$CLEAR" "$BOLD" "$*" "$PLAIN"; }
info() { printf '%s   %s\n' "$CLEAR" "$*"; }
die() {
  [[ -t 2 ]] && printf '\r\033[K' >&2
  echo "demo: error: $*" >&2
  exit 1
}

# shellcheck disable=SC2317  # reached through the trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "$SIM_PID" ]] && kill -0 "$SIM_PID" 2>/dev/null; then
    kill -TERM "$SIM_PID" 2>/dev/null || true
    wait "$SIM_PID" 2>/dev/null || true
  fi
  if [[ -n "$OTTERD_PID" ]] && kill -0 "$OTTERD_PID" 2>/dev/null; then
    say "stopping otterd (pid $OTTERD_PID)"
    kill -TERM "$OTTERD_PID" 2>/dev/null || true
    # otterd drains its record queue to PostgreSQL before it exits.
    for _ in $(seq 1 300); do
      kill -0 "$OTTERD_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$OTTERD_PID" 2>/dev/null; then
      info "otterd did not exit within 30 s; killing it"
      kill -KILL "$OTTERD_PID" 2>/dev/null || true
    fi
    wait "$OTTERD_PID" 2>/dev/null || true
    rm -f "$DEMO/otterd.pid"
  fi
  if ((STACK_STARTED)); then
    say "stopping the stack this demo started"
    bash scripts/stack.sh stop || true
  fi
  rm -f "$DEMO"/.res-* 2>/dev/null || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- helpers

# jget EXPR: the JavaScript expression EXPR over the JSON document `j` read from stdin;
# strings print raw, anything else as JSON. (node comes with scripts/setup.sh.)
jget() {
  node -e '
    let s = "";
    process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const j = JSON.parse(s);
      const v = new Function("j", "return (" + process.argv[1] + ");")(j);
      process.stdout.write(typeof v === "string" ? v : JSON.stringify(v === undefined ? null : v));
    });' "$1"
}

# mq pub|sub ARGS: mosquitto_pub/sub as the operator. The broker address and the password come
# from a private config file (.demo/mqtt/), so that the password is not in `ps` output.
mq() {
  local tool=$1
  shift
  XDG_CONFIG_HOME="$DEMO/mqtt" "mosquitto_$tool" "$@"
}

write_mqtt_config() {
  local hostport=${OTTER_TEST_MQTT_URL#*://}
  MQTT_HOST=${hostport%:*}
  MQTT_PORT=${hostport##*:}
  mkdir -p "$DEMO/mqtt"
  chmod 0700 "$DEMO/mqtt"
  local f
  for f in mosquitto_pub mosquitto_sub; do
    (
      umask 077
      printf -- '-h %s\n-p %s\n-u %s\n-P %s\n' "$MQTT_HOST" "$MQTT_PORT" "$OPERATOR" \
        "$OTTER_TEST_MQTT_OPERATOR_PASSWORD" >"$DEMO/mqtt/$f"
    )
  done
}

RES_TOPIC="$TOPIC_ROOT/admin/$OPERATOR/res"
REQ_TOPIC="$TOPIC_ROOT/admin/$OPERATOR/req"

# await_answer FILE ID TIMEOUT PID: the first response in FILE (written by mosquitto_sub -d,
# process PID) whose "id" is ID. Responses of other requests are skipped.
await_answer() {
  local file=$1 id=$2 timeout=$3 pid=$4 line="" i
  for ((i = 0; i < timeout * 10; i++)); do
    line=$(grep -F "\"id\":\"$id\"" "$file" | head -n 1 || true)
    [[ -n "$line" ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$file"
  [[ -n "$line" ]] || return 1
  printf '%s\n' "$line"
}

# listen TIMEOUT: starts mosquitto_sub on the response topic in the background and returns
# once the broker has acknowledged the subscription (so no answer can be missed). Sets
# LISTEN_FILE and LISTEN_PID.
listen() {
  local timeout=$1 i
  # Unique per call, also across the $(...) subshells that cmd usually runs in.
  LISTEN_TAG="$BASHPID-$RANDOM$RANDOM"
  LISTEN_FILE="$DEMO/.res-$LISTEN_TAG"
  : >"$LISTEN_FILE"
  # -d prints the SUBACK; stdbuf: line by line, not when the buffer fills.
  XDG_CONFIG_HOME="$DEMO/mqtt" stdbuf -oL mosquitto_sub -d -q 1 -t "$RES_TOPIC" -W "$timeout" \
    >"$LISTEN_FILE" 2>&1 &
  LISTEN_PID=$!
  for ((i = 0; i < 100; i++)); do
    grep -q 'received SUBACK' "$LISTEN_FILE" && return 0
    kill -0 "$LISTEN_PID" 2>/dev/null || break
    sleep 0.05
  done
  kill "$LISTEN_PID" 2>/dev/null || true
  echo "demo: cannot subscribe to $RES_TOPIC as $OPERATOR: $(tail -n 3 "$LISTEN_FILE")" >&2
  return 1
}

# cmd NAME [ARGS_JSON] [TIMEOUT]: one operator command; prints the response JSON and
# succeeds only if it says "ok": true.
cmd() {
  local name=$1 args=${2:-'{}'} timeout=${3:-15} id answer
  listen "$timeout" || return 2
  id="demo-$LISTEN_TAG"
  mq pub -q 1 -t "$REQ_TOPIC" -m "{\"id\":\"$id\",\"cmd\":\"$name\",\"args\":$args}" ||
    return 2
  if ! answer=$(await_answer "$LISTEN_FILE" "$id" "$timeout" "$LISTEN_PID"); then
    echo "demo: no answer to $name within ${timeout}s" >&2
    return 2
  fi
  printf '%s\n' "$answer"
  [[ $(jget 'j.ok' <<<"$answer") == true ]]
}

# The rollout's device counts per state, as one line.
rollout_counts() {
  local res
  res=$(cmd rollout.get "{\"id\":\"$1\"}") || {
    echo "(rollout.get failed: $res)"
    return 0
  }
  jget 'Object.entries(j.result.counts || {}).map(([k, v]) => k + " " + v).join(", ") || "-"' \
    <<<"$res"
}

# ---------------------------------------------------------------- 1. build and stack

say "installing what is missing (scripts/setup.sh)"
bash scripts/setup.sh

say "building otterd and otter-sim ($BUILD)"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" --target otterd otter-sim

say "starting the local stack (scripts/stack.sh)"
if ! bash scripts/stack.sh status >/dev/null 2>&1; then STACK_STARTED=1; fi
bash scripts/stack.sh start
eval "$(bash scripts/stack.sh env)"

mkdir -p "$DEMO"
chmod 0700 "$DEMO"
write_mqtt_config

if [[ -z $(psql "$OTTER_TEST_DB_URL" -tAc "SELECT 1 FROM pg_database WHERE datname = 'otter_demo'") ]]; then
  if ! out=$(psql "$OTTER_TEST_DB_URL" -qc 'CREATE DATABASE otter_demo' 2>&1) &&
    [[ "$out" != *"already exists"* ]]; then
    die "cannot create database otter_demo: $out"
  fi
  info "created database otter_demo"
fi
DB_URL="${OTTER_TEST_DB_URL%/*}/otter_demo"

# ---------------------------------------------------------------- 2. otterd

if [[ ! -f "$DEMO/signing.pem" ]]; then
  "$BUILD/otterd" keygen --out "$DEMO/signing.pem" >"$DEMO/keygen.txt"
  info "new signing key: $DEMO/signing.pem"
else
  info "signing key: $DEMO/signing.pem"
fi
openssl pkey -in "$DEMO/signing.pem" -pubout -out "$DEMO/signing.pub"
info "its public key (what devices pin): $DEMO/signing.pub"

if [[ -f "$DEMO/otterd.pid" ]]; then
  old=$(cat "$DEMO/otterd.pid")
  if [[ "$old" =~ ^[0-9]+$ ]] && kill -0 "$old" 2>/dev/null &&
    [[ "$(cat "/proc/$old/comm" 2>/dev/null)" == otterd ]]; then
    die "the otterd of an earlier demo still runs (pid $old): stop it first (Ctrl-C in its terminal, or kill $old)"
  fi
  rm -f "$DEMO/otterd.pid"
fi

say "starting otterd (log: $DEMO/otterd.log)"
OTTER_MQTT_URL="$OTTER_TEST_MQTT_URL" \
  OTTER_MQTT_USER=otterd \
  OTTER_MQTT_PASSWORD="$OTTER_TEST_MQTT_SERVICE_PASSWORD" \
  OTTER_DB_URL="$DB_URL" \
  OTTER_SIGNING_KEY="$DEMO/signing.pem" \
  OTTER_DATA_DIR="$DEMO/data" \
  OTTER_OPERATORS="$OPERATOR:admin" \
  OTTER_INSTANCE="$INSTANCE" \
  OTTER_LOG_LEVEL=warn \
  "$BUILD/otterd" >"$DEMO/otterd.log" 2>&1 &
OTTERD_PID=$!
echo "$OTTERD_PID" >"$DEMO/otterd.pid"

# Up means answering operator commands (connected, subscribed, database open).
up=0
for _ in $(seq 1 30); do
  if ! kill -0 "$OTTERD_PID" 2>/dev/null; then
    echo "---- $DEMO/otterd.log ----" >&2
    tail -n 30 "$DEMO/otterd.log" >&2 || true
    OTTERD_PID=""
    die "otterd exited during start-up (log above)"
  fi
  if cmd metrics.get '{}' 2 >/dev/null 2>&1; then
    up=1
    break
  fi
done
((up)) || die "otterd does not answer operator commands after 60 s; see $DEMO/otterd.log"
info "otterd is up (pid $OTTERD_PID)"

# ---------------------------------------------------------------- 3. a release

# Earlier runs left releases 1.1.x (versions are immutable): take the next patch number.
res=$(cmd release.list "{\"model\":\"$MODEL\",\"limit\":1000}") || die "release.list failed: $res"
patch=$(jget '(j.result.items || []).map(r => r.version.match(/^1\.1\.(\d+)$/)).filter(Boolean)
              .reduce((n, m) => Math.max(n, Number(m[1]) + 1), 0)' <<<"$res")
VERSION="1.1.$patch"
PREFIX=$([[ $patch -eq 0 ]] && echo sim || echo "sim$patch")

# A rollout still active from an earlier run would offer its release to the new fleet.
res=$(cmd rollout.list "{\"state\":\"active\",\"model\":\"$MODEL\",\"limit\":1000}") ||
  die "rollout.list failed: $res"
for id in $(jget '(j.result.items || []).map(r => r.id).join(" ")' <<<"$res"); do
  if res=$(cmd rollout.cancel "{\"id\":\"$id\",\"reason\":\"superseded by a new demo run\"}"); then
    info "cancelled rollout $id of an earlier demo run"
  else
    info "warning: could not cancel rollout $id of an earlier run: $res"
  fi
done

FIRMWARE="$DEMO/firmware-$VERSION.bin"
head -c 262144 /dev/urandom >"$FIRMWARE"
say "uploading $FIRMWARE (256 KiB) as $OPERATOR"
upload_id="fw-$VERSION-$$"
listen 30 || die "cannot listen for the upload's answer"
mq pub -q 1 -t "$TOPIC_ROOT/admin/$OPERATOR/upload/$upload_id" -f "$FIRMWARE" ||
  die "mosquitto_pub could not send the image"
up_res=$(await_answer "$LISTEN_FILE" "$upload_id" 30 "$LISTEN_PID") ||
  die "no answer to the upload within 30 s; see $DEMO/otterd.log"
[[ $(jget 'j.ok' <<<"$up_res") == true ]] || die "upload refused: $up_res"
SHA=$(jget 'j.result.sha256' <<<"$up_res")
info "sha256 $SHA, $(jget 'j.result.size' <<<"$up_res") bytes"

say "adding release $MODEL $VERSION"
res=$(cmd release.add "{\"model\":\"$MODEL\",\"version\":\"$VERSION\",\"sha256\":\"$SHA\",\"notes\":\"demo\"}") ||
  die "release.add failed: $res"

say "creating a 10 % canary rollout of $VERSION"
res=$(cmd rollout.create "{\"name\":\"canary-$VERSION\",\"model\":\"$MODEL\",\"version\":\"$VERSION\",\"target\":{\"type\":\"percent\",\"percent\":10}}") ||
  die "rollout.create failed: $res"
ROLLOUT=$(jget 'j.result.id' <<<"$res")
info "rollout $ROLLOUT"

# ---------------------------------------------------------------- 4. the fleet

# Does otterd serve MQTT chunk downloads yet? A chunk request for a file never offered is
# `forbidden` on a server that does, `unavailable` on one that does not.
SIM_DOWNLOAD=()
case "$DOWNLOAD" in
  1 | yes | true) info "devices download the image (DEMO_DOWNLOAD=$DOWNLOAD)" ;;
  0 | no | false)
    SIM_DOWNLOAD=(--no-download)
    info "devices skip the download (DEMO_DOWNLOAD=$DOWNLOAD)"
    ;;
  auto)
    probe=$(mosquitto_rr -h "$MQTT_HOST" -p "$MQTT_PORT" -i demo-probe -q 1 -W 5 \
      -t "$TOPIC_ROOT/dev/demo-probe/up/chunk" -e "$TOPIC_ROOT/dev/demo-probe/down/error" \
      -m '{"req":"probe","file":"0000000000000000","offset":0,"len":64,"count":1}' 2>/dev/null || true)
    code=$( (jget 'j.code' <<<"$probe") 2>/dev/null || echo none)
    if [[ "$code" == unavailable || "$code" == none ]]; then
      SIM_DOWNLOAD=(--no-download)
      info "otterd does not serve chunk downloads yet (probe: $code): devices run with --no-download"
    else
      info "otterd serves chunk downloads (probe: $code): devices download the image"
    fi
    ;;
  *) die "DEMO_DOWNLOAD must be auto, 1 or 0, not '$DOWNLOAD'" ;;
esac

say "starting $DEVICES devices ($PREFIX-0000..) at $FROM_VERSION; 3 % of updates fail or roll back"
# One fleet for the whole demo: the canary phase, then the widened rollout. (A second otter-sim
# would start every device at 1.0.0 again, and otterd would count the canary's devices as
# rolled back.)
"$BUILD/otter-sim" --devices "$DEVICES" --model "$MODEL" --version "$FROM_VERSION" \
  --pubkey "$DEMO/signing.pub" --mqtt "$OTTER_TEST_MQTT_URL" --prefix "$PREFIX" \
  --interval 2 --fail-rate 0.03 --until-version "$VERSION" --timeout 300 --json-summary \
  "${SIM_DOWNLOAD[@]}" >"$DEMO/summary.json" &
SIM_PID=$!

sleep 12
if ! kill -0 "$SIM_PID" 2>/dev/null; then
  sim_rc=0
  wait "$SIM_PID" || sim_rc=$?
  SIM_PID=""
  die "otter-sim stopped before the canary was widened (exit $sim_rc)"
fi
say "canary after 12 s: $(rollout_counts "$ROLLOUT")"
say "widening rollout $ROLLOUT to 100 %"
res=$(cmd rollout.update "{\"id\":\"$ROLLOUT\",\"percent\":100}") || die "rollout.update failed: $res"

sim_rc=0
wait "$SIM_PID" || sim_rc=$?
SIM_PID=""
((sim_rc == 0)) || die "the fleet did not reach $VERSION (otter-sim exit $sim_rc); see $DEMO/otterd.log"

# ---------------------------------------------------------------- 5. summary

say "summary"
# shellcheck disable=SC2016  # JavaScript template literals, not shell expansions
jget '[`every one of ${j.devices} devices runs ${j.goal.version} after ${j.elapsed_s} s` +
         (j.download ? "" : " (devices ran with --no-download: no image was fetched)"),
       `updates (offer accepted -> success after reboot): p50 ${j.update_ms.p50} ms, ` +
         `p90 ${j.update_ms.p90} ms, max ${j.update_ms.max} ms`,
       `failed ${j.statuses.failed || 0}, rolled back ${j.statuses.rolled_back || 0} ` +
         `(each retried at its next check); errors ${JSON.stringify(j.errors)}`
      ].map(l => "   " + l).join("\n") + "\n"' <"$DEMO/summary.json"
info "rollout $ROLLOUT as otterd recorded it: $(rollout_counts "$ROLLOUT")"
info "fleet summary (JSON): $DEMO/summary.json; otterd log: $DEMO/otterd.log"

if ((ONCE)); then
  exit 0
fi

say "otterd keeps running (pid $OTTERD_PID); press Ctrl-C to stop it"
trap 'exit 0' INT TERM  # the way to end the demo, not a failure
info "watch its events:  XDG_CONFIG_HOME=$DEMO/mqtt mosquitto_sub -t '$TOPIC_ROOT/events/#'"
info "run more devices:  $BUILD/otter-sim --devices 10 --model $MODEL --version $FROM_VERSION \\"
info "                     --pubkey $DEMO/signing.pub --mqtt $OTTER_TEST_MQTT_URL --prefix more ${SIM_DOWNLOAD[*]}"
wait "$OTTERD_PID" || true
OTTERD_PID=""
die "otterd exited; see $DEMO/otterd.log"
