#!/usr/bin/env bash
# Runs one benchmark command against the running local stack (`make up` first).
#
#   scripts/bench.sh cargo run --release -p eventfold-bench
#
# The stack's addresses (scripts/stack/env.sh) become the benchmarks' defaults: BENCH_DATABASE_URL
# is the stack server's maintenance database. Unless BENCH_HTTP_URL is set (empty skips the HTTP
# targets), two release builds of the command-service are started for the HTTP targets, each
# against its own fresh database (`synchronous_commit = on`), with a pid file, and stopped by pid
# when the benchmark ends:
# - BENCH_HTTP_URL: authentication on (the stack's AUTH_* variables, the local issuer's key set) on
#   EVENTFOLD_BENCH_HTTP_PORT (18080, admin listener on EVENTFOLD_BENCH_ADMIN_PORT, 19080), database
#   `eventfold_bench_http`;
# - BENCH_HTTP_NOAUTH_URL (unless set; empty skips that row): AUTH_MODE=disabled on
#   EVENTFOLD_BENCH_HTTP_NOAUTH_PORT (18090, admin on EVENTFOLD_BENCH_NOAUTH_ADMIN_PORT, 19090),
#   database `eventfold_bench_http_noauth`.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=stack/env.sh
source "$(dirname "$0")/stack/env.sh"

psql "$DATABASE_URL" -Atqc 'SELECT 1' >/dev/null 2>&1 \
  || die "PostgreSQL does not answer at $DATABASE_URL: start the stack with \`make up\` first"

export BENCH_DATABASE_URL="${BENCH_DATABASE_URL:-${DATABASE_URL%/*}/postgres}"

# start_bench_service NAME PORT PORT_VAR ADMIN_PORT ADMIN_PORT_VAR DATABASE [VAR=VALUE...]: a release
# command-service on 127.0.0.1:PORT against DATABASE (dropped and created anew, migrated), with the
# extra variables given, ready when its admin listener's /readyz answers.
start_bench_service() {
  local name="$1" port="$2" port_var="$3" admin_port="$4" admin_port_var="$5" db="$6"
  shift 6
  require_free_port "$name" "$port" "$port_var"
  require_free_port "$name" "$admin_port" "$admin_port_var"
  local db_url="${DATABASE_URL%/*}/$db"
  psql "$BENCH_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
    -c "CREATE DATABASE $db" >/dev/null
  psql "$db_url" -qc "ALTER DATABASE $db SET synchronous_commit = on" >/dev/null
  DATABASE_URL="$db_url" "$CARGO_TARGET_DIR/release/eventfold-migrate" >/dev/null
  # `env` execs the service, so the pid file names the service itself.
  HTTP_ADDR="127.0.0.1:$port" ADMIN_ADDR="127.0.0.1:$admin_port" LOG_FORMAT=json RUST_LOG=warn \
    DATABASE_URL="$db_url" \
    DATABASE_MAX_CONNECTIONS="${BENCH_POOL_SIZE:-32}" \
    start_daemon "$name" env "$@" "$CARGO_TARGET_DIR/release/command-service"
  wait_until "$name" 60 curl -fsS -m 5 "http://127.0.0.1:$admin_port/readyz"
  log "$name: release command-service at http://127.0.0.1:$port (pid $(cat "$(pid_file "$name")")), database $db${*:+, $*}"
}

if [[ -z "${BENCH_HTTP_URL+set}" ]]; then
  auth_name=bench-command-service
  noauth_name=bench-command-service-noauth
  [[ -f "$AUTH_JWKS_FILE" ]] \
    || die "AUTH_JWKS_FILE=$AUTH_JWKS_FILE does not exist: start the stack with \`make up\` first"
  (cd "$EVENTFOLD_ROOT" && cargo build --release --quiet -p command-service -p eventfold-postgres --bins) \
    || die "release build of the command-service failed"
  trap 'stop_by_pid "$auth_name" 20; stop_by_pid "$noauth_name" 20' EXIT
  port="${EVENTFOLD_BENCH_HTTP_PORT:-18080}"
  start_bench_service "$auth_name" "$port" EVENTFOLD_BENCH_HTTP_PORT \
    "${EVENTFOLD_BENCH_ADMIN_PORT:-19080}" EVENTFOLD_BENCH_ADMIN_PORT eventfold_bench_http \
    AUTH_MODE=jwt
  export BENCH_HTTP_URL="http://127.0.0.1:$port"
  if [[ -z "${BENCH_HTTP_NOAUTH_URL+set}" ]]; then
    port="${EVENTFOLD_BENCH_HTTP_NOAUTH_PORT:-18090}"
    start_bench_service "$noauth_name" "$port" EVENTFOLD_BENCH_HTTP_NOAUTH_PORT \
      "${EVENTFOLD_BENCH_NOAUTH_ADMIN_PORT:-19090}" EVENTFOLD_BENCH_NOAUTH_ADMIN_PORT \
      eventfold_bench_http_noauth AUTH_MODE=disabled
    export BENCH_HTTP_NOAUTH_URL="http://127.0.0.1:$port"
  fi
fi
"$@"
