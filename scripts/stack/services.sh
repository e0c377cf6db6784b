#!/usr/bin/env bash
# The three eventfold services, built with cargo and run against the local stack.
#
#   scripts/stack/services.sh start|stop [NAME...]|status
#
# Ports: command-service $EVENTFOLD_COMMAND_PORT (8080), outbox-relay $EVENTFOLD_RELAY_PORT (8082),
# projector $EVENTFOLD_PROJECTOR_PORT (8083); their admin listeners (/readyz, /metrics, admin APIs) on
# $EVENTFOLD_COMMAND_ADMIN_PORT (9080), $EVENTFOLD_RELAY_ADMIN_PORT (9082) and
# $EVENTFOLD_PROJECTOR_ADMIN_PORT (9083); logs in $LOG_DIR/<service>.log (JSON lines). The
# services trust tokens of the local issuer (AUTH_* in env.sh; `eventfold token --help`).
source "$(dirname "$0")/env.sh"

SERVICES=(command-service outbox-relay projector)
READY_TIMEOUT="${EVENTFOLD_SERVICE_READY_TIMEOUT:-60}"

port_of() {
  case "$1" in
    command-service) echo "$EVENTFOLD_COMMAND_PORT" ;;
    outbox-relay) echo "$EVENTFOLD_RELAY_PORT" ;;
    projector) echo "$EVENTFOLD_PROJECTOR_PORT" ;;
  esac
}
port_var_of() {
  case "$1" in
    command-service) echo EVENTFOLD_COMMAND_PORT ;;
    outbox-relay) echo EVENTFOLD_RELAY_PORT ;;
    projector) echo EVENTFOLD_PROJECTOR_PORT ;;
  esac
}
admin_port_of() {
  case "$1" in
    command-service) echo "$EVENTFOLD_COMMAND_ADMIN_PORT" ;;
    outbox-relay) echo "$EVENTFOLD_RELAY_ADMIN_PORT" ;;
    projector) echo "$EVENTFOLD_PROJECTOR_ADMIN_PORT" ;;
  esac
}
admin_port_var_of() {
  case "$1" in
    command-service) echo EVENTFOLD_COMMAND_ADMIN_PORT ;;
    outbox-relay) echo EVENTFOLD_RELAY_ADMIN_PORT ;;
    projector) echo EVENTFOLD_PROJECTOR_ADMIN_PORT ;;
  esac
}

# ready ADMIN_PORT: /readyz lives on the admin listener.
ready() { curl -fsS -m 5 "http://127.0.0.1:$1/readyz"; }

# Login role of each service (a member of the group role the migrations grant to), so no service
# owns a table: the command service can INSERT and SELECT events but not UPDATE, DELETE or TRUNCATE.
login_role_of() {
  case "$1" in
    command-service) echo "ef_command_service eventfold_writer" ;;
    outbox-relay) echo "ef_outbox_relay eventfold_relay" ;;
    projector) echo "ef_projector eventfold_projector" ;;
  esac
}

# DATABASE_URL with the service's login role (local passwords equal the role name).
database_url_of() {
  local role; read -r role _ <<<"$(login_role_of "$1")"
  local rest="${DATABASE_URL#*://}"
  echo "postgres://$role:$role@${rest#*@}"
}

# Applies the migrations as the migration role ($DATABASE_URL) and creates the services' login roles.
migrate() {
  log "applying migrations (eventfold-migrate)"
  "$CARGO_TARGET_DIR/debug/eventfold-migrate" >>"$(log_file eventfold-migrate)" 2>&1 \
    || die "migrations failed; see $(log_file eventfold-migrate)"
  local svc role group
  for svc in "${SERVICES[@]}"; do
    read -r role group <<<"$(login_role_of "$svc")"
    psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -qc "DO \$\$ BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$role') THEN
        CREATE ROLE $role LOGIN PASSWORD '$role' IN ROLE $group;
      END IF; END \$\$" >/dev/null || die "cannot create the login role $role"
    # Server-side bounds per role: a runaway statement or a transaction left open by a stuck
    # client ends on its own. A projector's rebuild streams the event store in one statement and
    # lifts statement_timeout for that transaction only.
    psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -qc "ALTER ROLE $role SET statement_timeout = '30s'" \
      -c "ALTER ROLE $role SET idle_in_transaction_session_timeout = '60s'" >/dev/null \
      || die "cannot set the timeouts of $role"
  done
  # The local projector runs every read model: it holds each read model's role.
  psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -qc "SELECT eventfold_grant_read_models('ef_projector')" \
    >/dev/null || die "cannot grant the read models' roles to ef_projector"
}

# Registers every version of every Avro schema under the services' topic prefix before any service
# starts: the relay and the projector only look schema ids up, and a relay that finds a schema
# missing halts publishing (its /readyz says which subject). Idempotent: a registered version keeps
# its id.
register_schemas() {
  local prefix="${KAFKA_TOPIC_PREFIX:-eventfold.}"
  log "registering the Avro schemas for topic prefix $prefix (eventfold schemas register)"
  EVENTFOLD_TOPIC_PREFIX="$prefix" "$CARGO_TARGET_DIR/debug/eventfold" schemas register \
    --dir "$EVENTFOLD_ROOT/schemas" >>"$(log_file eventfold-schemas)" 2>&1 \
    || die "schema registration failed; see $(log_file eventfold-schemas)"
}

# Creates the local token issuer's key pair (or keeps the existing one) before any service reads
# its key set; the key id is derived from the public key, so tokens stay valid across restarts.
issuer_keys() {
  "$CARGO_TARGET_DIR/debug/eventfold" token init --dir "$(dirname "$AUTH_ISSUER_KEY_FILE")" >/dev/null \
    || die "cannot create the local token issuer's key pair next to $AUTH_ISSUER_KEY_FILE"
  [[ -f "$AUTH_JWKS_FILE" ]] || die "AUTH_JWKS_FILE=$AUTH_JWKS_FILE does not exist"
}

cmd_start() {
  log "building the services (cargo build, target dir $CARGO_TARGET_DIR)"
  (cd "$EVENTFOLD_ROOT" && cargo build --quiet -p command-service -p outbox-relay -p projector \
    -p eventfold-postgres -p eventfold-cli --bins) || die "cargo build of the services failed"
  issuer_keys
  migrate
  register_schemas
  local svc port admin_port
  for svc in "${SERVICES[@]}"; do
    port="$(port_of "$svc")"
    admin_port="$(admin_port_of "$svc")"
    if is_running "$svc"; then
      log "$svc already running (pid $(cat "$(pid_file "$svc")"))"
      continue
    fi
    require_free_port "$svc" "$port" "$(port_var_of "$svc")"
    require_free_port "$svc" "$admin_port" "$(admin_port_var_of "$svc")"
    HTTP_ADDR="127.0.0.1:$port" ADMIN_ADDR="127.0.0.1:$admin_port" LOG_FORMAT="${LOG_FORMAT:-json}" \
      DATABASE_URL="$(database_url_of "$svc")" start_daemon "$svc" "$CARGO_TARGET_DIR/debug/$svc"
  done
  for svc in "${SERVICES[@]}"; do
    port="$(port_of "$svc")"
    admin_port="$(admin_port_of "$svc")"
    wait_until "$svc" "$READY_TIMEOUT" ready "$admin_port"
    log "$svc ready at http://127.0.0.1:$port, admin http://127.0.0.1:$admin_port (pid $(cat "$(pid_file "$svc")"))"
  done
}

# stop [NAME...]: stop the named services (default: all), in reverse start order.
cmd_stop() {
  local names=("$@") i
  ((${#names[@]})) || names=("${SERVICES[@]}")
  for ((i = ${#names[@]} - 1; i >= 0; i--)); do stop_by_pid "${names[i]}" 20; done
}

cmd_status() {
  local svc
  for svc in "${SERVICES[@]}"; do
    status_line "$svc" "http://127.0.0.1:$(port_of "$svc")  admin http://127.0.0.1:$(admin_port_of "$svc")"
  done
}

case "${1:-}" in
  start) cmd_start ;;
  stop) shift; cmd_stop "$@" ;;
  status) cmd_status ;;
  *) die "usage: $0 {start|stop|status}" ;;
esac
