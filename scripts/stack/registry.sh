#!/usr/bin/env bash
# Local schema registry with the Confluent REST API: AxonOps Schema Registry (Go), built once from the
# Go module proxy, no Docker.
#
#   scripts/stack/registry.sh start|stop|restart|status|url
#
# URL:     http://127.0.0.1:$EVENTFOLD_REGISTRY_PORT (8081) -- `registry.sh url` prints it; use it as
#          SCHEMA_REGISTRY_URL (the Confluent API is at the root, no path prefix).
# Binary:  $DOWNLOADS/go/bin/axonops-schema-registry-<version>/schema-registry
# Storage: in memory by default: every start begins EMPTY (schema ids restart at 1). To keep schemas across
#          restarts, export SCHEMA_REGISTRY_STORAGE_TYPE=postgresql and SCHEMA_REGISTRY_PG_HOST/_PORT/
#          _DATABASE/_USER/_PASSWORD/_SSLMODE before `start` (they are passed through to the registry).
# Log:     $LOG_DIR/registry.log
# After every fresh start the global compatibility level is set to BACKWARD (PUT /config).
source "$(dirname "$0")/lib.sh"

NAME=registry
AXONOPS_MODULE=github.com/axonops/axonops-schema-registry
# Pinned. The proxy answers 403 for this module's version list (so `go list -m -versions` and
# `go install ...@latest` fail here) but serves this tag.
AXONOPS_VERSION="${EVENTFOLD_AXONOPS_VERSION:-v0.2.1}"
GO_ROOT="$DOWNLOADS/go"
REGISTRY_BIN="$GO_ROOT/bin/axonops-schema-registry-$AXONOPS_VERSION/schema-registry"
REGISTRY_DATA="$DATA_DIR/registry"
REGISTRY_URL="http://127.0.0.1:$EVENTFOLD_REGISTRY_PORT"
READY_TIMEOUT="${EVENTFOLD_REGISTRY_READY_TIMEOUT:-60}"
SR_CT="application/vnd.schemaregistry.v1+json"

go_env() {
  env GOPATH="$GO_ROOT" GOMODCACHE="$GO_ROOT/pkg/mod" GOCACHE="$GO_ROOT/cache" GOTOOLCHAIN=local \
    GOFLAGS=-modcacherw "$@"
}

# Build the pinned release once. `go install module/cmd/...@tag` would be the obvious way, but it also
# fetches the module's version list (for deprecation notices), which the proxy refuses for this module;
# so download the tagged module (checksum-verified against sum.golang.org) and build it with its own
# go.mod/go.sum, which is what `go install` does too.
ensure_binary() {
  [[ -x "$REGISTRY_BIN" ]] && return 0
  command -v go >/dev/null || die "$NAME: go not found (Go >= 1.26 is needed to build $AXONOPS_MODULE)"
  log "$NAME: building $AXONOPS_MODULE@$AXONOPS_VERSION (first run only, ~1-2 min)"
  local dir
  dir="$(cd "$REGISTRY_DATA" && go_env go mod download -json "$AXONOPS_MODULE@$AXONOPS_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" \
    || die "$NAME: go mod download $AXONOPS_MODULE@$AXONOPS_VERSION failed"
  [[ -n "$dir" && -d "$dir" ]] || die "$NAME: go mod download $AXONOPS_MODULE@$AXONOPS_VERSION gave no module dir"
  mkdir -p "$(dirname "$REGISTRY_BIN")"
  (cd "$dir" && go_env go build -trimpath -ldflags "-X main.version=$AXONOPS_VERSION" \
      -o "$REGISTRY_BIN.tmp" ./cmd/schema-registry) \
    || { rm -f "$REGISTRY_BIN.tmp"; die "$NAME: go build of $AXONOPS_MODULE@$AXONOPS_VERSION failed"; }
  mv "$REGISTRY_BIN.tmp" "$REGISTRY_BIN"
}

ready() { curl -fsS -m 2 "$REGISTRY_URL/health/ready"; }

set_backward() {
  local out
  out="$(curl -fsS -m 10 -X PUT -H "Content-Type: $SR_CT" --data '{"compatibility":"BACKWARD"}' \
    "$REGISTRY_URL/config")" || fail_start "$NAME" "PUT $REGISTRY_URL/config (BACKWARD) failed"
  [[ "$out" == *BACKWARD* ]] || fail_start "$NAME" "PUT /config answered: $out"
}

cmd_start() {
  if is_running "$NAME"; then
    log "$NAME already running (pid $(cat "$(pid_file "$NAME")")) at $REGISTRY_URL"
    return 0
  fi
  rm -f "$(pid_file "$NAME")"
  require_free_port "$NAME" "$EVENTFOLD_REGISTRY_PORT" EVENTFOLD_REGISTRY_PORT
  command -v curl >/dev/null || die "$NAME: curl not found"
  mkdir -p "$REGISTRY_DATA"
  ensure_binary
  log "$NAME: starting AxonOps Schema Registry $AXONOPS_VERSION at $REGISTRY_URL (storage: ${SCHEMA_REGISTRY_STORAGE_TYPE:-memory})"
  (
    cd "$REGISTRY_DATA"
    export SCHEMA_REGISTRY_HOST=127.0.0.1 SCHEMA_REGISTRY_PORT="$EVENTFOLD_REGISTRY_PORT"
    export SCHEMA_REGISTRY_COMPATIBILITY_LEVEL=BACKWARD
    start_daemon "$NAME" "$REGISTRY_BIN"
  )
  # Not ready in time (or died): do not leave a half-started registry or a stale pid file behind.
  trap 'stop_by_pid "$NAME" 30' EXIT
  wait_until "$NAME" "$READY_TIMEOUT" ready
  set_backward
  trap - EXIT
  log "$NAME ready at $REGISTRY_URL (pid $(cat "$(pid_file "$NAME")"), log $(log_file "$NAME"))"
}

cmd_stop() { stop_by_pid "$NAME" 30; }
cmd_status() { status_line "$NAME" "$REGISTRY_URL"; }

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart) cmd_stop; cmd_start ;;
  status) cmd_status ;;
  url) printf '%s\n' "$REGISTRY_URL" ;;
  *) die "usage: $0 {start|stop|restart|status|url}" ;;
esac
