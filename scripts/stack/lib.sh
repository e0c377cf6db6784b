# shellcheck shell=bash
# Shared helpers for the local stack scripts: paths, ports, pid files, readiness waits.
# Sourced by scripts/stack/*.sh; never executed directly.

set -euo pipefail

EVENTFOLD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
EVENTFOLD_CACHE="${EVENTFOLD_CACHE:-$HOME/.cache/eventfold}"
DOWNLOADS="$EVENTFOLD_CACHE/downloads"   # jars, tarballs, go binaries (kept between runs)
RUN_DIR="$EVENTFOLD_CACHE/run"           # pid files
LOG_DIR="$EVENTFOLD_CACHE/logs"          # one log per server / service
DATA_DIR="$EVENTFOLD_CACHE/data"         # server data directories
mkdir -p "$DOWNLOADS" "$RUN_DIR" "$LOG_DIR" "$DATA_DIR"

# Ports (each can be moved by its env var).
EVENTFOLD_PG_PORT="${EVENTFOLD_PG_PORT:-5432}"
EVENTFOLD_KAFKA_PORT="${EVENTFOLD_KAFKA_PORT:-9092}"
EVENTFOLD_KAFKA_CONTROLLER_PORT="${EVENTFOLD_KAFKA_CONTROLLER_PORT:-9093}"
EVENTFOLD_REGISTRY_PORT="${EVENTFOLD_REGISTRY_PORT:-8081}"
EVENTFOLD_NEO4J_BOLT_PORT="${EVENTFOLD_NEO4J_BOLT_PORT:-7687}"
EVENTFOLD_COMMAND_PORT="${EVENTFOLD_COMMAND_PORT:-8080}"
EVENTFOLD_RELAY_PORT="${EVENTFOLD_RELAY_PORT:-8082}"
EVENTFOLD_PROJECTOR_PORT="${EVENTFOLD_PROJECTOR_PORT:-8083}"
# The services' admin listeners (ADMIN_ADDR): /readyz, /metrics and the admin APIs.
EVENTFOLD_COMMAND_ADMIN_PORT="${EVENTFOLD_COMMAND_ADMIN_PORT:-9080}"
EVENTFOLD_RELAY_ADMIN_PORT="${EVENTFOLD_RELAY_ADMIN_PORT:-9082}"
EVENTFOLD_PROJECTOR_ADMIN_PORT="${EVENTFOLD_PROJECTOR_ADMIN_PORT:-9083}"

# Kafka: KAFKA_BROKERS=1 (default) is one KRaft node, pid name `kafka`; 3 is a KRaft cluster whose node N
# (pid name kafka-N) listens on EVENTFOLD_KAFKA_PORT + 2*(N-1) and its controller on the port after it.
KAFKA_BROKERS="${KAFKA_BROKERS:-1}"

# kafka_check_brokers: a one-line message and exit code 2 unless KAFKA_BROKERS is 1 or 3.
kafka_check_brokers() {
  if [[ "$KAFKA_BROKERS" != 1 && "$KAFKA_BROKERS" != 3 ]]; then
    printf '[stack] error: KAFKA_BROKERS=%s: expected 1 (one broker) or 3 (a KRaft cluster)\n' "$KAFKA_BROKERS" >&2
    exit 2
  fi
}

# kafka_node_name N: the pid/log name of node N.
kafka_node_name() { if ((KAFKA_BROKERS == 1)); then printf kafka; else printf 'kafka-%s' "$1"; fi; }

# kafka_node_port N: node N's PLAINTEXT port.
kafka_node_port() { printf '%s' $((EVENTFOLD_KAFKA_PORT + 2 * ($1 - 1))); }

# kafka_bootstrap: the comma-separated bootstrap list of every node.
kafka_bootstrap() {
  local n out=""
  for ((n = 1; n <= KAFKA_BROKERS; n++)); do out+="${out:+,}127.0.0.1:$(kafka_node_port "$n")"; done
  printf '%s' "$out"
}

# kafka_running: every Kafka node of the chosen mode is running.
kafka_running() {
  local n
  for ((n = 1; n <= KAFKA_BROKERS; n++)); do is_running "$(kafka_node_name "$n")" || return 1; done
}

# process_running NAME: is_running, except that `kafka` means every node of the chosen Kafka mode.
process_running() { if [[ "$1" == kafka ]]; then kafka_running; else is_running "$1"; fi; }

log()  { printf '[stack] %s\n' "$*" >&2; }
die()  { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

pid_file() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }
log_file() { printf '%s/%s.log' "$LOG_DIR" "$1"; }

# pid_alive PID: a live process, not a zombie (pid 1 on these VMs reaps orphans with some delay, so
# `kill -0` alone still succeeds for a while after a process died).
pid_alive() {
  [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null || return 1
  local state; state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
  [[ -n "$state" && "$state" != Z ]]
}

# is_running NAME: true when NAME's pid file names a live process.
is_running() {
  local pf; pf="$(pid_file "$1")"
  [[ -f "$pf" ]] || return 1
  pid_alive "$(cat "$pf")"
}

# port_in_use PORT: true when something listens on 127.0.0.1:PORT.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# require_free_port NAME PORT ENVVAR: fail naming the port and the env var that moves it.
require_free_port() {
  if port_in_use "$2"; then
    die "$1: port 127.0.0.1:$2 is already taken by another process; set $3 to another port"
  fi
}

# fail_start NAME MESSAGE: print which server failed, its last log lines and where its log is.
fail_start() {
  local lf; lf="$(log_file "$1")"
  printf '[stack] error: %s failed to start: %s\n' "$1" "$2" >&2
  if [[ -f "$lf" ]]; then
    printf '[stack] last lines of %s:\n' "$lf" >&2
    tail -n 25 "$lf" >&2 || true
  fi
  printf '[stack] full log: %s\n' "$lf" >&2
  exit 1
}

# wait_until NAME TIMEOUT_SECONDS CMD...: poll CMD every 0.5 s until it succeeds; fail_start on timeout
# or when NAME's process died.
wait_until() {
  local name="$1" timeout="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ! is_running "$name"; then fail_start "$name" "process exited before it was ready"; fi
    if (( SECONDS >= deadline )); then fail_start "$name" "not ready after ${timeout}s"; fi
    sleep 0.5
  done
}

# start_daemon NAME CMD...: run CMD in the background, its output in NAME's log, its pid in NAME's pid file.
start_daemon() {
  local name="$1"; shift
  local lf; lf="$(log_file "$name")"
  printf '\n===== %s starting %s =====\n' "$(date -Is)" "$name" >>"$lf"
  setsid "$@" >>"$lf" 2>&1 < /dev/null &
  echo $! >"$(pid_file "$name")"
}

# stop_by_pid NAME [TIMEOUT]: SIGTERM the pid in NAME's pid file, wait, then SIGKILL; remove the pid file.
stop_by_pid() {
  local name="$1" timeout="${2:-30}"
  local pf; pf="$(pid_file "$name")"
  [[ -f "$pf" ]] || return 0
  local pid; pid="$(cat "$pf")"
  if pid_alive "$pid"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + timeout))
    while pid_alive "$pid"; do
      if (( SECONDS >= deadline )); then
        log "$name (pid $pid) did not stop in ${timeout}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.2
    done
  fi
  rm -f "$pf"
}

# status_line NAME URL: one line for `make status`.
status_line() {
  if is_running "$1"; then
    printf '  %-16s running (pid %s)  %s\n' "$1" "$(cat "$(pid_file "$1")")" "$2"
  else
    printf '  %-16s stopped           %s\n' "$1" "$2"
  fi
}

# maven_copy_deps POMDIR OUTDIR: resolve a pom-packaged helper project's runtime classpath into OUTDIR once.
maven_copy_deps() {
  local pomdir="$1" out="$2"
  if [[ -f "$out/.complete" ]]; then return 0; fi
  command -v mvn >/dev/null || die "mvn not found (install maven: apt-get install -y maven)"
  log "resolving $(basename "$pomdir") jars from Maven Central into $out"
  mkdir -p "$out"
  mvn -q -B -Dstyle.color=never -Dmaven.repo.local="$DOWNLOADS/m2" -f "$pomdir/pom.xml" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$out" >&2
  touch "$out/.complete"
}

# use_stack: starts the parts of the local stack that are not running and, when the calling script
# exits, stops exactly those parts again (keeping the script's exit code). Needs STACK and step().
STACK_STARTED=()
use_stack() {
  local p
  for p in postgres kafka neo4j registry command-service outbox-relay projector; do
    process_running "$p" || STACK_STARTED+=("$p")
  done
  trap stop_started_stack EXIT
  if ((${#STACK_STARTED[@]})); then
    step "starting the stack (not running: ${STACK_STARTED[*]})"
    "$STACK/stack.sh" up
  fi
}

stop_started_stack() {
  local rc=$? p
  if ((${#STACK_STARTED[@]})); then
    step "stopping what this run started: ${STACK_STARTED[*]}"
    for p in command-service outbox-relay projector; do
      [[ " ${STACK_STARTED[*]} " == *" $p "* ]] && "$STACK/services.sh" stop "$p"
    done
    for p in registry neo4j kafka postgres; do
      [[ " ${STACK_STARTED[*]} " == *" $p "* ]] && "$STACK/$p.sh" stop
    done
  fi
  exit "$rc"
}
