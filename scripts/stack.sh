#!/usr/bin/env bash
# A private local stack for otter's tests and demos: PostgreSQL 15 and Mosquitto 2.0 on
# loopback ports, everything under the checkout's git-ignored .stack/ folder.
#
#   scripts/stack.sh start    start both (idempotent; starts whichever is not running)
#   scripts/stack.sh stop     stop both (harmless when nothing runs)
#   scripts/stack.sh status   print each service's state; exit 0 only if both run
#   scripts/stack.sh env      print `export` lines for the tests (also in .stack/env)
#
# Folder: OTTER_STACK_DIR (default <checkout>/.stack; give other ports too).
# Ports: OTTER_STACK_MQTT_PORT (default 18830), OTTER_STACK_PG_PORT (default 15432), read
# when a service starts; a running service keeps its port until it is stopped.
#
# Layout of .stack/:
#   secrets            generated passwords (0600)
#   env                export lines for the tests (0600)
#   pg/                PostgreSQL data directory (owned by postgres when we are root)
#   pgsock/            PostgreSQL unix socket directory
#   pg.log             PostgreSQL log
#   mosquitto/         mosquitto.conf, acl, passwd, mosquitto.pid, port
#   mosquitto.log      Mosquitto log
#
# Privileges: PostgreSQL refuses to run as root, so as root its commands run as the
# `postgres` user (runuser), which must own the data directory; Mosquitto started as root
# drops to the `mosquitto` user, which must read its config, ACL and password files. Both
# users must therefore be able to traverse the path to .stack/. When that is not the case
# (a checkout under /root, mode 0700), we do NOT loosen permissions of the user's folders:
# .stack is instead created as a symlink to /tmp/otter-stack-<hash of the checkout path>
# (a root-owned 0755 folder), so every path below still reads .stack/... . If /tmp is
# wiped (reboot), the symlink dangles and the next `start` recreates a fresh stack there.
# Run as a normal user, everything simply runs as that user.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd -P)
# OTTER_STACK_DIR runs a second, independent stack (e.g. the benchmark beside the tests).
STACK="${OTTER_STACK_DIR:-$ROOT/.stack}"
PG_BIN=/usr/lib/postgresql/15/bin
MQTT_PORT_REQ=${OTTER_STACK_MQTT_PORT:-18830}
PG_PORT_REQ=${OTTER_STACK_PG_PORT:-15432}
PG_SUPERUSER=otter
SERVICE_USER=otterd
OPERATOR_USERS=(admin1 admin2 viewer1 ghost)

# Paths handed to the services are the resolved ones (STACK_REAL): if .stack is a symlink
# into /tmp, the path through the checkout is not traversable by postgres and mosquitto.
set_paths() {
  if [[ -d "$STACK" ]]; then
    STACK_REAL=$(cd "$STACK" && pwd -P)
  else
    STACK_REAL=$STACK
  fi
  PGDATA="$STACK_REAL/pg"
  PG_LOG="$STACK_REAL/pg.log"
  PG_SOCK="$STACK_REAL/pgsock"
  MOSQ_DIR="$STACK_REAL/mosquitto"
  MOSQ_CONF="$MOSQ_DIR/mosquitto.conf"
  MOSQ_PID="$MOSQ_DIR/mosquitto.pid"
  MOSQ_LOG="$STACK_REAL/mosquitto.log"
}
set_paths

IS_ROOT=0
[[ $(id -u) -eq 0 ]] && IS_ROOT=1

log() { echo "stack: $*"; }
die() {
  echo "stack: error: $*" >&2
  exit 1
}
# die with the tail of a log file
die_log() {
  local file=$1
  shift
  echo "stack: error: $*" >&2
  if [[ -f "$file" ]]; then
    echo "---- last lines of $file ----" >&2
    tail -n 30 "$file" >&2 || true
    echo "----" >&2
  fi
  exit 1
}

valid_port() { [[ "$1" =~ ^[0-9]+$ ]] && ((10#$1 >= 1 && 10#$1 <= 65535)); }

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Run a PostgreSQL command as the user that owns the cluster. `cd /` so that the command
# does not start in a folder the postgres user cannot read.
as_pg() {
  if ((IS_ROOT)); then
    (cd / && LC_ALL=C.UTF-8 runuser -u postgres -- "$@")
  else
    (cd / && LC_ALL=C.UTF-8 "$@")
  fi
}

# Can user $1 traverse directory $2 (every component)?
user_can_traverse() {
  (cd / && runuser -u "$1" -- test -x "$2") 2>/dev/null
}

require_tools() {
  [[ -x "$PG_BIN/initdb" && -x "$PG_BIN/pg_ctl" ]] ||
    die "PostgreSQL 15 not found in $PG_BIN; run scripts/setup.sh"
  command -v mosquitto >/dev/null 2>&1 || [[ -x /usr/sbin/mosquitto ]] ||
    die "mosquitto not found; run scripts/setup.sh"
  command -v mosquitto_passwd >/dev/null 2>&1 || die "mosquitto_passwd not found; run scripts/setup.sh"
  command -v openssl >/dev/null 2>&1 || die "openssl not found; run scripts/setup.sh"
  if ((IS_ROOT)); then
    id postgres >/dev/null 2>&1 || die "user 'postgres' does not exist; run scripts/setup.sh"
    id mosquitto >/dev/null 2>&1 || die "user 'mosquitto' does not exist; run scripts/setup.sh"
  fi
}

mosquitto_bin() {
  command -v mosquitto 2>/dev/null || echo /usr/sbin/mosquitto
}

# Create .stack (see the header for why it may be a symlink into /tmp).
ensure_stack_dir() {
  if [[ -L "$STACK" && ! -e "$STACK" ]]; then
    local target
    target=$(readlink "$STACK")
    log "recreating $target (the stack's folder had been removed)"
    make_private_tmp_dir "$target"
  fi
  [[ -d "$STACK" ]] && return 0
  mkdir -p "$STACK"
  chmod 0755 "$STACK"
  if ((IS_ROOT)) && ! { user_can_traverse postgres "$STACK" && user_can_traverse mosquitto "$STACK"; }; then
    local hash target
    hash=$(printf '%s' "$STACK" | sha256sum | cut -c1-12)
    target="/tmp/otter-stack-$hash"
    rmdir "$STACK"
    make_private_tmp_dir "$target"
    ln -s "$target" "$STACK"
    log "$ROOT is not traversable by the postgres/mosquitto users; .stack -> $target"
  fi
}

# A folder in /tmp that must be ours (not planted by another user) and traversable.
make_private_tmp_dir() {
  local dir=$1
  if [[ -e "$dir" || -L "$dir" ]]; then
    [[ -d "$dir" && ! -L "$dir" && $(stat -c %u "$dir") -eq $(id -u) ]] ||
      die "$dir exists but is not a folder owned by $(id -un); remove it"
  else
    mkdir -m 0755 "$dir"
  fi
  chmod 0755 "$dir"
}

# Passwords are generated once per stack and kept in .stack/secrets.
ensure_secrets() {
  local f="$STACK/secrets"
  if [[ ! -s "$f" ]]; then
    local svc op
    svc=$(openssl rand -hex 16)
    op=$(openssl rand -hex 16)
    (
      umask 077
      printf 'SERVICE_PASSWORD=%s\nOPERATOR_PASSWORD=%s\n' "$svc" "$op" >"$f.tmp"
    )
    mv "$f.tmp" "$f"
  fi
  chmod 0600 "$f"
  SERVICE_PASSWORD=$(sed -n 's/^SERVICE_PASSWORD=//p' "$f")
  OPERATOR_PASSWORD=$(sed -n 's/^OPERATOR_PASSWORD=//p' "$f")
  [[ -n "$SERVICE_PASSWORD" && -n "$OPERATOR_PASSWORD" ]] || die "$f is corrupt; run stop, remove it and start again"
}

# ---------------------------------------------------------------- PostgreSQL

pg_initialized() { [[ -f "$PGDATA/PG_VERSION" ]]; }

pg_running() {
  pg_initialized || return 1
  as_pg "$PG_BIN/pg_ctl" status -D "$PGDATA" >/dev/null 2>&1
}

# The port of the running server, from postmaster.pid (line 4).
pg_port() { sed -n '4p' "$PGDATA/postmaster.pid" 2>/dev/null; }
pg_pid() { sed -n '1p' "$PGDATA/postmaster.pid" 2>/dev/null; }

pg_init() {
  pg_initialized && return 0
  log "initialising PostgreSQL cluster in $PGDATA"
  rm -rf "$PGDATA"
  mkdir -m 0700 "$PGDATA"
  ((IS_ROOT)) && chown postgres:postgres "$PGDATA"
  if ! as_pg "$PG_BIN/initdb" -D "$PGDATA" -U "$PG_SUPERUSER" --auth=trust \
    --encoding=UTF8 --locale=C.UTF-8 --no-instructions >"$STACK/initdb.log" 2>&1; then
    rm -rf "$PGDATA"
    die_log "$STACK/initdb.log" "initdb failed"
  fi
  # The unix socket path (folder + "/.s.PGSQL.<port>") must fit in 107 bytes; for a very
  # deep checkout, go without the socket (the tests use TCP anyway).
  local sockdir="$PG_SOCK"
  if ((${#sockdir} > 85)); then
    log "socket folder path too long for a unix socket; PostgreSQL listens on TCP only"
    sockdir=""
  fi
  # Trust is acceptable only because the server listens on loopback only, and only for
  # the local socket and 127.0.0.1.
  as_pg tee "$PGDATA/pg_hba.conf" >/dev/null <<EOF
# otter test stack: trust on the local socket and 127.0.0.1 only
local   all   all                 trust
host    all   all   127.0.0.1/32  trust
EOF
  as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null <<EOF

# ---- otter test stack (scripts/stack.sh); the port is given at start (-p) ----
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sockdir'
# A throw-away cluster: durability traded for speed.
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
log_line_prefix = '%m [%p] %q%u@%d '
EOF
}

pg_start() {
  if pg_running; then
    local port
    port=$(pg_port)
    log "PostgreSQL already running (pid $(pg_pid), port $port)"
    [[ "$port" == "$PG_PORT_REQ" ]] ||
      log "note: requested PG port $PG_PORT_REQ ignored; stop the stack to change it"
    return 0
  fi
  if port_open "$PG_PORT_REQ"; then
    die "127.0.0.1:$PG_PORT_REQ is already in use by another process; set OTTER_STACK_PG_PORT"
  fi
  pg_init
  mkdir -p "$PG_SOCK"
  touch "$PG_LOG"
  if ((IS_ROOT)); then
    chown postgres:postgres "$PG_SOCK" "$PG_LOG"
  fi
  chmod 0755 "$PG_SOCK"
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT_REQ"
  if ! as_pg "$PG_BIN/pg_ctl" start -w -t 60 -D "$PGDATA" -l "$PG_LOG" \
    -o "-p $PG_PORT_REQ" >/dev/null 2>"$STACK/pg_ctl.err" 9>&-; then
    cat "$STACK/pg_ctl.err" >&2 2>/dev/null || true
    die_log "$PG_LOG" "PostgreSQL did not start"
  fi
  rm -f "$STACK/pg_ctl.err"
  # Prove that a client gets in over TCP, as the tests will.
  local i
  for ((i = 0; i < 50; i++)); do
    if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT_REQ" -U "$PG_SUPERUSER" -d postgres; then
      return 0
    fi
    sleep 0.2
  done
  die_log "$PG_LOG" "PostgreSQL started but does not accept connections on 127.0.0.1:$PG_PORT_REQ"
}

pg_stop() {
  if pg_running; then
    log "stopping PostgreSQL (pid $(pg_pid))"
    as_pg "$PG_BIN/pg_ctl" stop -w -t 60 -D "$PGDATA" -m fast >/dev/null ||
      die_log "$PG_LOG" "pg_ctl stop failed"
  fi
}

# ---------------------------------------------------------------- Mosquitto

mosq_pid() { cat "$MOSQ_PID" 2>/dev/null || true; }

mosq_running() {
  local pid
  pid=$(mosq_pid)
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/comm" && "$(cat "/proc/$pid/comm" 2>/dev/null)" == mosquitto ]] || return 1
  # Ours, not another checkout's: its command line names our config file.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$MOSQ_CONF"
}

mosq_port() { cat "$MOSQ_DIR/port" 2>/dev/null || true; }

# substitute @NAME@ placeholders of a broker-config template
render() {
  sed -e "s|@MQTT_PORT@|$MQTT_PORT_REQ|g" \
    -e "s|@MOSQ_DIR@|$MOSQ_DIR|g" \
    -e "s|@STACK_DIR@|$STACK_REAL|g" "$1"
}

mosq_configure() {
  local tpl="$ROOT/broker-config"
  [[ -f "$tpl/stack.conf.in" && -f "$tpl/stack.acl.in" ]] || die "templates missing in $tpl"
  [[ "$STACK_REAL" != *"|"* ]] || die "the stack path must not contain '|'"
  mkdir -p "$MOSQ_DIR"
  render "$tpl/stack.conf.in" >"$MOSQ_CONF.tmp"
  render "$tpl/stack.acl.in" >"$MOSQ_DIR/acl.tmp"
  # The password file, rebuilt from .stack/secrets at each start.
  local pw="$MOSQ_DIR/passwd.tmp" u
  rm -f "$pw"
  (
    umask 077
    : >"$pw"
  )
  mosquitto_passwd -b "$pw" "$SERVICE_USER" "$SERVICE_PASSWORD" >/dev/null
  for u in "${OPERATOR_USERS[@]}"; do
    mosquitto_passwd -b "$pw" "$u" "$OPERATOR_PASSWORD" >/dev/null
  done
  chmod 0644 "$MOSQ_CONF.tmp" "$MOSQ_DIR/acl.tmp"
  chmod 0600 "$pw"
  touch "$MOSQ_LOG"
  if ((IS_ROOT)); then
    # Readable (the password file: only) by the user mosquitto drops to; the folder is the
    # broker's so that it can write and remove its pid file.
    chown mosquitto:mosquitto "$pw" "$MOSQ_LOG" "$MOSQ_DIR"
  fi
  chmod 0755 "$MOSQ_DIR"
  mv "$MOSQ_CONF.tmp" "$MOSQ_CONF"
  mv "$MOSQ_DIR/acl.tmp" "$MOSQ_DIR/acl"
  mv "$pw" "$MOSQ_DIR/passwd"
}

mosq_start() {
  if mosq_running; then
    local port
    port=$(mosq_port)
    log "Mosquitto already running (pid $(mosq_pid), port $port)"
    [[ "$port" == "$MQTT_PORT_REQ" ]] ||
      log "note: requested MQTT port $MQTT_PORT_REQ ignored; stop the stack to change it"
    return 0
  fi
  rm -f "$MOSQ_PID"
  if port_open "$MQTT_PORT_REQ"; then
    die "127.0.0.1:$MQTT_PORT_REQ is already in use by another process; set OTTER_STACK_MQTT_PORT"
  fi
  mosq_configure
  log "starting Mosquitto on 127.0.0.1:$MQTT_PORT_REQ"
  local start_line
  start_line=$(($(wc -l <"$MOSQ_LOG") + 1))
  if ! (cd / && "$(mosquitto_bin)" -c "$MOSQ_CONF" -d) 2>"$STACK/mosquitto.err" 9>&-; then
    cat "$STACK/mosquitto.err" >&2 || true
    die_log "$MOSQ_LOG" "mosquitto failed to start"
  fi
  local i
  for ((i = 0; i < 100; i++)); do
    if mosq_running && port_open "$MQTT_PORT_REQ"; then
      echo "$MQTT_PORT_REQ" >"$MOSQ_DIR/port"
      rm -f "$STACK/mosquitto.err"
      return 0
    fi
    sleep 0.1
  done
  cat "$STACK/mosquitto.err" >&2 2>/dev/null || true
  echo "---- $MOSQ_LOG since this start ----" >&2
  tail -n "+$start_line" "$MOSQ_LOG" | tail -n 30 >&2 || true
  mosq_stop >/dev/null 2>&1 || true
  die "Mosquitto did not accept connections on 127.0.0.1:$MQTT_PORT_REQ within 10 s"
}

mosq_stop() {
  if mosq_running; then
    local pid i
    pid=$(mosq_pid)
    log "stopping Mosquitto (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "Mosquitto did not exit within 10 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$MOSQ_PID" "$MOSQ_DIR/port"
}

# ---------------------------------------------------------------- env

# The export lines for the running stack (requested ports for a service that is down).
env_lines() {
  local mport pport
  if mosq_running; then mport=$(mosq_port); else mport=$MQTT_PORT_REQ; fi
  if pg_running; then pport=$(pg_port); else pport=$PG_PORT_REQ; fi
  printf 'export OTTER_TEST_MQTT_URL=%q\n' "tcp://127.0.0.1:$mport"
  printf 'export OTTER_TEST_MQTT_SERVICE_USER=%q\n' "$SERVICE_USER"
  printf 'export OTTER_TEST_MQTT_SERVICE_PASSWORD=%q\n' "$SERVICE_PASSWORD"
  printf 'export OTTER_TEST_MQTT_OPERATOR_PASSWORD=%q\n' "$OPERATOR_PASSWORD"
  printf 'export OTTER_TEST_DB_URL=%q\n' "postgresql://$PG_SUPERUSER@127.0.0.1:$pport/postgres"
  printf 'export OTTER_TEST_PG_BIN=%q\n' "$PG_BIN"
  printf 'export OTTER_TEST_STACK_DIR=%q\n' "$STACK"
}

write_env() {
  (
    umask 077
    env_lines >"$STACK/env.tmp"
  )
  mv "$STACK/env.tmp" "$STACK/env"
}

# ---------------------------------------------------------------- commands

# fd 9 stays open for the script's life; the daemons are started with 9>&- so that they do
# not inherit (and hold) the lock.
lock() {
  exec 9>"$STACK/.lock"
  if ! flock -n 9; then
    log "waiting for another stack.sh (lock $STACK/.lock)"
    flock -w 120 9 || die "another stack.sh still holds $STACK/.lock after 120 s"
  fi
}

cmd_start() {
  valid_port "$MQTT_PORT_REQ" || die "OTTER_STACK_MQTT_PORT='$MQTT_PORT_REQ' is not a port"
  valid_port "$PG_PORT_REQ" || die "OTTER_STACK_PG_PORT='$PG_PORT_REQ' is not a port"
  [[ "$MQTT_PORT_REQ" != "$PG_PORT_REQ" ]] || die "the MQTT and PostgreSQL ports must differ"
  require_tools
  ensure_stack_dir
  set_paths
  lock
  ensure_secrets
  pg_start
  mosq_start
  write_env
  log "up: PostgreSQL 127.0.0.1:$(pg_port), Mosquitto 127.0.0.1:$(mosq_port); env in $STACK/env"
}

cmd_stop() {
  if [[ ! -d "$STACK" ]]; then
    log "nothing to stop"
    return 0
  fi
  lock
  mosq_stop
  pg_stop
  log "stopped"
}

cmd_status() {
  local ok=0
  if [[ -d "$STACK" ]] && pg_running; then
    echo "postgres:  running (pid $(pg_pid), 127.0.0.1:$(pg_port), data $PGDATA)"
  else
    echo "postgres:  stopped"
    ok=1
  fi
  if [[ -d "$STACK" ]] && mosq_running; then
    echo "mosquitto: running (pid $(mosq_pid), 127.0.0.1:$(mosq_port), config $MOSQ_CONF)"
  else
    echo "mosquitto: stopped"
    ok=1
  fi
  return $ok
}

cmd_env() {
  [[ -s "$STACK/secrets" ]] || die "the stack was never started: run scripts/stack.sh start"
  ensure_secrets
  env_lines
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *)
    echo "usage: $0 start|stop|status|env" >&2
    exit 2
    ;;
esac
