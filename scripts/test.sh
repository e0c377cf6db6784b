#!/usr/bin/env bash
# `make test`: format and lint checks, then every test against the real local stack. Starts whatever
# part of the stack is not running and stops exactly that part again at the end.
source "$(dirname "$0")/stack/env.sh"
STACK="$EVENTFOLD_ROOT/scripts/stack"
cd "$EVENTFOLD_ROOT"

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo check --features testcontainers (the Docker fallback must compile)"
cargo check -p eventfold-tests --features testcontainers --tests --quiet

step "helm chart: lint, kubeconform, rendered-manifest checks, bad-values tests"
"$EVENTFOLD_ROOT/scripts/helm/check.sh"

# Start what is not running; only that is stopped at the end.
use_stack

step "cargo build -p outbox-relay -p projector (tests start them as processes, to kill -9 them)"
cargo build --quiet -p outbox-relay -p projector --bins

step "cargo test (unit and integration tests against the real stack)"
log_file="$EVENTFOLD_CACHE/logs/test-output.log"
set +e
cargo test --workspace --no-fail-fast -- --test-threads="${EVENTFOLD_TEST_THREADS:-4}" 2>&1 | tee "$log_file"
rc=${PIPESTATUS[0]}
set -e
((rc == 0)) || { printf 'cargo test failed (exit %s); output in %s\n' "$rc" "$log_file" >&2; exit "$rc"; }

# cargo test exits 0 when no test ran at all: treat that as a failure, not as green.
passed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^passed/) s += $i } END { print s + 0 }' "$log_file")
failed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^failed/) s += $i } END { print s + 0 }' "$log_file")
if ((passed == 0)); then
  echo "no test ran: refusing to call this green" >&2
  exit 1
fi
printf '\n%s passed, %s failed\n' "$passed" "$failed"
