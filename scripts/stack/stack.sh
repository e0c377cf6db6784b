#!/usr/bin/env bash
# The whole local stack: four real servers, then the three services.
#
#   scripts/stack/stack.sh up       start what is not running, wait until everything is ready
#   scripts/stack/stack.sh down     stop everything, by pid, in reverse order
#   scripts/stack/stack.sh status   one line per process
#   scripts/stack/stack.sh env      the addresses as export lines (eval "$(scripts/stack/stack.sh env)")
#   scripts/stack/stack.sh running  exit 0 when every server and service is running
source "$(dirname "$0")/env.sh"
HERE="$(dirname "$0")"

SERVERS=(postgres kafka neo4j registry)
ALL=("${SERVERS[@]}" command-service outbox-relay projector)

create_registry_database() {
  local exists
  exists="$(psql "$DATABASE_URL" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$SCHEMA_REGISTRY_PG_DATABASE'")" \
    || die "cannot query PostgreSQL at $DATABASE_URL"
  if [[ "$exists" != 1 ]]; then
    psql "$DATABASE_URL" -qc "CREATE DATABASE $SCHEMA_REGISTRY_PG_DATABASE" >/dev/null
  fi
}

cmd_up() {
  local started=$SECONDS
  "$HERE/postgres.sh" start
  [[ "$SCHEMA_REGISTRY_STORAGE_TYPE" == postgresql ]] && create_registry_database
  "$HERE/kafka.sh" start
  "$HERE/neo4j.sh" start
  "$HERE/registry.sh" start
  "$HERE/services.sh" start
  log "stack ready in $((SECONDS - started))s:"
  cat >&2 <<EOT
  PostgreSQL       $DATABASE_URL
  Kafka            $KAFKA_BOOTSTRAP_SERVERS
  Schema registry  $SCHEMA_REGISTRY_URL
  Neo4j (Bolt)     $NEO4J_URI
  command-service  $EVENTFOLD_COMMAND_URL  (admin $EVENTFOLD_COMMAND_ADMIN_URL)
  outbox-relay     $EVENTFOLD_RELAY_URL  (admin $EVENTFOLD_RELAY_ADMIN_URL)
  projector        $EVENTFOLD_PROJECTOR_URL  (admin $EVENTFOLD_PROJECTOR_ADMIN_URL)
  token issuer     $AUTH_ISSUER (keys $AUTH_JWKS_FILE); a token: eventfold token --tenant T --scope all
  logs             $LOG_DIR
EOT
}

cmd_down() {
  "$HERE/services.sh" stop
  local i
  for ((i = ${#SERVERS[@]} - 1; i >= 0; i--)); do "$HERE/${SERVERS[i]}.sh" stop; done
  log "stack stopped"
}

cmd_status() {
  local s
  for s in "${SERVERS[@]}"; do "$HERE/$s.sh" status; done
  "$HERE/services.sh" status
}

cmd_env() {
  local v
  for v in "${STACK_ENV_VARS[@]}"; do printf 'export %s=%q\n' "$v" "${!v}"; done
}

cmd_running() {
  local p
  for p in "${ALL[@]}"; do process_running "$p" || return 1; done
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  running) cmd_running ;;
  *) die "usage: $0 {up|down|status|env|running}" ;;
esac
