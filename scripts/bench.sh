#!/usr/bin/env bash
# Runs one benchmark command against the running local stack (`make up` first).
#
#   scripts/bench.sh cargo run --release -p eventfold-bench
#
# The stack's addresses (scripts/stack/env.sh) become the benchmarks' defaults: BENCH_DATABASE_URL
# is the stack server's maintenance database. Unless BENCH_HTTP_URL is set (empty skips the HTTP
# target), a release build of the command-service is started for the HTTP target on
# EVENTFOLD_BENCH_HTTP_PORT (18080, its admin listener on EVENTFOLD_BENCH_ADMIN_PORT, 19080) against
# its own fresh database `eventfold_bench_http`, with a pid file, and stopped by pid when the
# benchmark ends.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=stack/env.sh
source "$(dirname "$0")/stack/env.sh"

psql "$DATABASE_URL" -Atqc 'SELECT 1' >/dev/null 2>&1 \
  || die "PostgreSQL does not answer at $DATABASE_URL: start the stack with \`make up\` first"

export BENCH_DATABASE_URL="${BENCH_DATABASE_URL:-${DATABASE_URL%/*}/postgres}"

if [[ -z "${BENCH_HTTP_URL+set}" ]]; then
  port="${EVENTFOLD_BENCH_HTTP_PORT:-18080}"
  admin_port="${EVENTFOLD_BENCH_ADMIN_PORT:-19080}"
  name=bench-command-service
  require_free_port "$name" "$port" EVENTFOLD_BENCH_HTTP_PORT
  require_free_port "$name" "$admin_port" EVENTFOLD_BENCH_ADMIN_PORT
  (cd "$EVENTFOLD_ROOT" && cargo build --release --quiet -p command-service -p eventfold-postgres --bins) \
    || die "release build of the command-service failed"
  http_db="${DATABASE_URL%/*}/eventfold_bench_http"
  psql "$BENCH_DATABASE_URL" -qc "DROP DATABASE IF EXISTS eventfold_bench_http WITH (FORCE)" \
    -c "CREATE DATABASE eventfold_bench_http" >/dev/null
  psql "$http_db" -qc "ALTER DATABASE eventfold_bench_http SET synchronous_commit = on" >/dev/null
  DATABASE_URL="$http_db" "$CARGO_TARGET_DIR/release/eventfold-migrate" >/dev/null
  trap 'stop_by_pid "$name" 20' EXIT
  HTTP_ADDR="127.0.0.1:$port" ADMIN_ADDR="127.0.0.1:$admin_port" LOG_FORMAT=json RUST_LOG=warn \
    DATABASE_URL="$http_db" \
    DATABASE_MAX_CONNECTIONS="${BENCH_POOL_SIZE:-32}" \
    start_daemon "$name" "$CARGO_TARGET_DIR/release/command-service"
  wait_until "$name" 60 curl -fsS -m 5 "http://127.0.0.1:$admin_port/readyz"
  export BENCH_HTTP_URL="http://127.0.0.1:$port"
  log "HTTP target: release command-service at $BENCH_HTTP_URL (pid $(cat "$(pid_file "$name")")), database eventfold_bench_http"
fi
"$@"
