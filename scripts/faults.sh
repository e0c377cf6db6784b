#!/usr/bin/env bash
# `make faults`: the fault suite (tests/faults, binary eventfold-faults) against the stack instance of
# $EVENTFOLD_CACHE and its EVENTFOLD_*_PORT variables. Builds the service binaries and the runner,
# starts the servers that are not running (PostgreSQL, Kafka, Neo4j, registry; the runner starts its
# own service processes) and stops exactly those again at the end.
#
#   scripts/faults.sh [F1 F15 ...]     (no names: every fault; FAULTS="F1 F15" via make)
#
# The faults stop, pause and restart the servers of that instance: point it at a stack nobody else
# is using (see README, "Fault suite").
source "$(dirname "$0")/stack/env.sh"
STACK="$EVENTFOLD_ROOT/scripts/stack"
cd "$EVENTFOLD_ROOT"

# F10 runs a service under Debian's faketime, F8/F9 forward through socat: installed only when absent.
missing=()
command -v faketime >/dev/null || missing+=(faketime)
command -v socat >/dev/null || missing+=(socat)
if ((${#missing[@]})); then
  apt-get install -y -q "${missing[@]}" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; } \
    || echo "faults: could not install ${missing[*]}; F8/F9/F10 will say so" >&2
fi

RUNNER="$CARGO_TARGET_DIR/debug/eventfold-faults"
cargo build --quiet -p command-service -p outbox-relay -p projector -p eventfold-faults --bins

# Check the names before starting anything: one line and exit 2 for an unknown one.
if (($#)); then
  known=" $("$RUNNER" --list | awk '{print $1}' | tr '\n' ' ')"
  for f in "$@"; do
    [[ "$known" == *" ${f^^} "* ]] || { echo "faults: unknown fault $f (known:$known)" >&2; exit 2; }
  done
fi

started=()
for p in postgres kafka neo4j registry; do
  process_running "$p" || started+=("$p")
done
stop_started() {
  local rc=$? p
  for p in registry neo4j kafka postgres; do
    [[ " ${started[*]} " == *" $p "* ]] && "$STACK/$p.sh" stop
  done
  exit "$rc"
}
trap stop_started EXIT
for p in "${started[@]}"; do
  if [[ "$p" == registry && "$SCHEMA_REGISTRY_STORAGE_TYPE" == postgresql ]]; then
    psql "$DATABASE_URL" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$SCHEMA_REGISTRY_PG_DATABASE'" | grep -q 1 \
      || psql "$DATABASE_URL" -qc "CREATE DATABASE $SCHEMA_REGISTRY_PG_DATABASE" >/dev/null
  fi
  "$STACK/$p.sh" start
done

set +e
if (($#)); then "$RUNNER" "$@"; else "$RUNNER" --all; fi
