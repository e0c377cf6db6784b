#!/usr/bin/env bash
# Runs one benchmark command against the running local stack (`make up` first); starts nothing.
#
#   scripts/bench.sh cargo run --release -p eventfold-bench
#
# The stack's addresses (scripts/stack/env.sh) become the benchmarks' defaults: BENCH_DATABASE_URL
# is the stack server's maintenance database, BENCH_HTTP_URL the command-service (set it empty to
# skip the HTTP target).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=stack/env.sh
source "$(dirname "$0")/stack/env.sh"

psql "$DATABASE_URL" -Atqc 'SELECT 1' >/dev/null 2>&1 \
  || die "PostgreSQL does not answer at $DATABASE_URL: start the stack with \`make up\` first"

export BENCH_DATABASE_URL="${BENCH_DATABASE_URL:-${DATABASE_URL%/*}/postgres}"
export BENCH_HTTP_URL="${BENCH_HTTP_URL-$EVENTFOLD_COMMAND_URL}"
exec "$@"
