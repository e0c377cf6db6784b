#!/usr/bin/env bash
# PostgreSQL 15 (Debian packages) as an isolated cluster under the eventfold cache.
#   scripts/stack/postgres.sh {start|stop|status}
# Data: $DATA_DIR/postgres   log: $(log_file postgres)   pid file: $(pid_file postgres) (the postmaster pid)
# Listens on 127.0.0.1:$EVENTFOLD_PG_PORT; role/database eventfold/eventfold (password eventfold).
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

NAME=postgres
PG_BIN="${EVENTFOLD_PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_DATA="$DATA_DIR/postgres"
PG_SOCKET_DIR="$RUN_DIR/postgres-socket"   # unix socket (admin access by the server's OS user, peer auth)
PG_USER_OS=postgres                         # OS user the server runs as when this script runs as root
PG_URL="postgres://eventfold:eventfold@127.0.0.1:$EVENTFOLD_PG_PORT/eventfold"

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# as_pg CMD...: run a short command as the server's OS user (postgres when we are root, else ourselves).
as_pg() {
  if is_root; then (cd / && runuser -u "$PG_USER_OS" -- "$@"); else "$@"; fi
}

# Long-running server: setpriv execs in place (runuser forks a watching parent), so start_daemon's
# pid is the postmaster itself.
pg_exec_prefix() {
  if is_root; then
    printf '%s\0' setpriv "--reuid=$PG_USER_OS" "--regid=$PG_USER_OS" --init-groups --
  fi
}

ensure_binaries() {
  [[ -x "$PG_BIN/postgres" && -x "$PG_BIN/initdb" ]] && return 0
  if ! is_root; then
    die "postgres: PostgreSQL 15 binaries not found in $PG_BIN; install them as root: apt-get update && apt-get install -y postgresql"
  fi
  log "postgres: binaries missing in $PG_BIN; installing with apt-get (apt-get update first)"
  # Keep the package's own 'main' cluster from being started on port 5432 during installation.
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1
  fi
  local rc=0
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; } >&2 || rc=$?
  if (( created_policy )); then rm -f "$policy"; fi
  (( rc == 0 )) || die "postgres: apt-get install -y postgresql failed (exit $rc)"
  [[ -x "$PG_BIN/postgres" ]] || die "postgres: still no $PG_BIN/postgres after installing; set EVENTFOLD_PG_BIN"
}

# As root: the postgres user must own its data dir and be able to traverse the path down to it.
# Grant only o+x (search, no listing) on the ancestors that block it, top-down, and say so.
ensure_os_user_and_dirs() {
  if ! is_root; then
    mkdir -p "$PG_DATA" "$PG_SOCKET_DIR"; chmod 700 "$PG_DATA" "$PG_SOCKET_DIR"
    return 0
  fi
  if ! id -u "$PG_USER_OS" >/dev/null 2>&1; then
    log "postgres: creating system user $PG_USER_OS"
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash "$PG_USER_OS"
  fi
  local target d path=""
  for target in "$DATA_DIR" "$RUN_DIR"; do
    IFS=/ read -ra parts <<<"${target#/}"
    path=""
    for d in "${parts[@]}"; do
      path="$path/$d"
      if ! runuser -u "$PG_USER_OS" -- test -x "$path" 2>/dev/null; then
        log "postgres: granting o+x (traverse only, no read) on $path so the $PG_USER_OS user can reach its data/socket dirs"
        chmod o+x "$path"
      fi
    done
  done
  local dir
  for dir in "$PG_DATA" "$PG_SOCKET_DIR"; do
    mkdir -p "$dir"
    chown "$PG_USER_OS:$PG_USER_OS" "$dir"
    chmod 700 "$dir"
  done
}

init_cluster() {
  [[ -f "$PG_DATA/PG_VERSION" ]] && return 0
  log "postgres: initdb into $PG_DATA"
  as_pg "$PG_BIN/initdb" -D "$PG_DATA" --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=scram-sha-256 >>"$(log_file "$NAME")" 2>&1 \
    || fail_start "$NAME" "initdb into $PG_DATA failed"
}

# Running per our pid file? Else, our postmaster alive but its pid file lost: take the pid back from
# postmaster.pid.
adopt_running_postmaster() {
  local pf; pf="$(pid_file "$NAME")"
  if [[ -f "$pf" ]] && pid_alive "$(cat "$pf")"; then return 0; fi
  rm -f "$pf"
  [[ -f "$PG_DATA/postmaster.pid" ]] || return 1
  local pid; pid="$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)"
  if pid_alive "$pid" && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == postgres ]]; then
    echo "$pid" >"$(pid_file "$NAME")"
    log "postgres: adopted running postmaster pid $pid from $PG_DATA/postmaster.pid"
    return 0
  fi
  return 1
}

# After a crash the old postmaster can linger as a zombie for a moment; postgres itself checks its
# lock file with kill(pid, 0) and would refuse to start, so wait for the zombie to be reaped.
wait_for_dead_postmaster() {
  [[ -f "$PG_DATA/postmaster.pid" ]] || return 0
  local pid; pid="$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)"
  [[ -n "$pid" ]] || return 0
  local deadline=$((SECONDS + 15))
  while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.2; done
}

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$EVENTFOLD_PG_PORT" -t 2; }

admin_psql() {
  as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$EVENTFOLD_PG_PORT" -d postgres
}

ensure_role_and_db() {
  admin_psql >>"$(log_file "$NAME")" 2>&1 <<'SQL' || fail_start "$NAME" "could not create role/database eventfold"
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'eventfold') THEN
    CREATE ROLE eventfold LOGIN SUPERUSER PASSWORD 'eventfold';
  ELSE
    ALTER ROLE eventfold LOGIN SUPERUSER PASSWORD 'eventfold';
  END IF;
END
$$;
SELECT 'CREATE DATABASE eventfold OWNER eventfold'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'eventfold') \gexec
SQL
}

cmd_start() {
  if adopt_running_postmaster; then
    log "postgres: already running (pid $(cat "$(pid_file "$NAME")")); checking readiness"
  else
    ensure_binaries
    require_free_port "$NAME" "$EVENTFOLD_PG_PORT" EVENTFOLD_PG_PORT
    ensure_os_user_and_dirs
    init_cluster
    wait_for_dead_postmaster
    local -a prefix=()
    if is_root; then mapfile -d '' prefix < <(pg_exec_prefix); fi
    log "postgres: starting on 127.0.0.1:$EVENTFOLD_PG_PORT (log $(log_file "$NAME"))"
    start_daemon "$NAME" "${prefix[@]}" "$PG_BIN/postgres" -D "$PG_DATA" \
      -c listen_addresses=127.0.0.1 \
      -c port="$EVENTFOLD_PG_PORT" \
      -c unix_socket_directories="$PG_SOCKET_DIR" \
      -c fsync=on \
      -c track_commit_timestamp=on \
      -c max_connections=200 \
      -c shared_buffers=1GB
  fi
  wait_until "$NAME" 60 pg_ready
  ensure_role_and_db
  log "postgres: ready  $PG_URL  (pid $(cat "$(pid_file "$NAME")"))"
}

cmd_stop() {
  if ! adopt_running_postmaster; then
    log "postgres: not running"
    return 0
  fi
  local pid; pid="$(cat "$(pid_file "$NAME")")"
  log "postgres: stopping (pid $pid, pg_ctl stop -m fast)"
  if ! as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 30 >>"$(log_file "$NAME")" 2>&1; then
    log "postgres: pg_ctl stop failed; falling back to the pid file"
  fi
  # pg_ctl -w returns once postmaster.pid is gone, a moment before the process itself exits.
  local deadline=$((SECONDS + 5))
  while pid_alive "$pid" && (( SECONDS < deadline )); do sleep 0.1; done
  if pid_alive "$pid"; then
    stop_by_pid "$NAME" 20          # SIGTERM (smart shutdown), then SIGKILL
  else
    rm -f "$(pid_file "$NAME")"     # exited (maybe a zombie until pid 1 reaps it)
  fi
  if pid_alive "$pid"; then die "postgres: pid $pid still alive after stop"; fi
  log "postgres: stopped"
}

cmd_status() {
  adopt_running_postmaster >/dev/null 2>&1 || true
  status_line "$NAME" "$PG_URL"
}

case "${1:-}" in
  start)  cmd_start ;;
  stop)   cmd_stop ;;
  status) cmd_status ;;
  *) die "usage: $0 {start|stop|status}" ;;
esac
