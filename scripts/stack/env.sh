# shellcheck shell=bash
# The addresses of the local stack as the services and tests read them. Sourced by stack.sh and
# services.sh; `scripts/stack/stack.sh env` prints them as export lines.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export DATABASE_URL="${DATABASE_URL:-postgres://eventfold:eventfold@127.0.0.1:$EVENTFOLD_PG_PORT/eventfold}"
kafka_check_brokers
export KAFKA_BROKERS
export KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-$(kafka_bootstrap)}"
# On the 3-broker cluster the services create topics that survive a broker loss: three replicas,
# acks=all writes taken while two are in sync.
if ((KAFKA_BROKERS > 1)); then
  export KAFKA_TOPIC_REPLICATION="${KAFKA_TOPIC_REPLICATION:-3}"
  export KAFKA_TOPIC_MIN_ISR="${KAFKA_TOPIC_MIN_ISR:-2}"
fi
export SCHEMA_REGISTRY_URL="${SCHEMA_REGISTRY_URL:-http://127.0.0.1:$EVENTFOLD_REGISTRY_PORT}"
export NEO4J_URI="${NEO4J_URI:-bolt://127.0.0.1:$EVENTFOLD_NEO4J_BOLT_PORT}"
export NEO4J_USER="${NEO4J_USER:-neo4j}"
export NEO4J_PASSWORD="${NEO4J_PASSWORD:-eventfold}"
export EVENTFOLD_COMMAND_URL="${EVENTFOLD_COMMAND_URL:-http://127.0.0.1:$EVENTFOLD_COMMAND_PORT}"
export EVENTFOLD_RELAY_URL="${EVENTFOLD_RELAY_URL:-http://127.0.0.1:$EVENTFOLD_RELAY_PORT}"
export EVENTFOLD_PROJECTOR_URL="${EVENTFOLD_PROJECTOR_URL:-http://127.0.0.1:$EVENTFOLD_PROJECTOR_PORT}"
export EVENTFOLD_COMMAND_ADMIN_URL="${EVENTFOLD_COMMAND_ADMIN_URL:-http://127.0.0.1:$EVENTFOLD_COMMAND_ADMIN_PORT}"
export EVENTFOLD_RELAY_ADMIN_URL="${EVENTFOLD_RELAY_ADMIN_URL:-http://127.0.0.1:$EVENTFOLD_RELAY_ADMIN_PORT}"
export EVENTFOLD_PROJECTOR_ADMIN_URL="${EVENTFOLD_PROJECTOR_ADMIN_URL:-http://127.0.0.1:$EVENTFOLD_PROJECTOR_ADMIN_PORT}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$EVENTFOLD_CACHE/target}"

# The registry keeps its schemas in the stack's PostgreSQL (database schema_registry), so schema ids
# survive restarts.
export SCHEMA_REGISTRY_STORAGE_TYPE="${SCHEMA_REGISTRY_STORAGE_TYPE:-postgresql}"
export SCHEMA_REGISTRY_PG_HOST="${SCHEMA_REGISTRY_PG_HOST:-127.0.0.1}"
export SCHEMA_REGISTRY_PG_PORT="${SCHEMA_REGISTRY_PG_PORT:-$EVENTFOLD_PG_PORT}"
export SCHEMA_REGISTRY_PG_DATABASE="${SCHEMA_REGISTRY_PG_DATABASE:-schema_registry}"
export SCHEMA_REGISTRY_PG_USER="${SCHEMA_REGISTRY_PG_USER:-eventfold}"
export SCHEMA_REGISTRY_PG_PASSWORD="${SCHEMA_REGISTRY_PG_PASSWORD:-eventfold}"
export SCHEMA_REGISTRY_PG_SSLMODE="${SCHEMA_REGISTRY_PG_SSLMODE:-disable}"

# Bearer tokens: the services trust the local issuer whose RSA key pair `services.sh start`
# creates (`eventfold token init`) in $EVENTFOLD_CACHE/auth, kept between runs; `eventfold token`
# and the tests sign with its private key.
export AUTH_ISSUER_KEY_FILE="${AUTH_ISSUER_KEY_FILE:-$EVENTFOLD_CACHE/auth/issuer.pem}"
export AUTH_JWKS_FILE="${AUTH_JWKS_FILE:-$(dirname "$AUTH_ISSUER_KEY_FILE")/jwks.json}"
export AUTH_ISSUER="${AUTH_ISSUER:-eventfold-local}"
export AUTH_AUDIENCE="${AUTH_AUDIENCE:-eventfold}"

STACK_ENV_VARS=(DATABASE_URL KAFKA_BOOTSTRAP_SERVERS SCHEMA_REGISTRY_URL NEO4J_URI NEO4J_USER NEO4J_PASSWORD
  EVENTFOLD_COMMAND_URL EVENTFOLD_RELAY_URL EVENTFOLD_PROJECTOR_URL
  EVENTFOLD_COMMAND_ADMIN_URL EVENTFOLD_RELAY_ADMIN_URL EVENTFOLD_PROJECTOR_ADMIN_URL CARGO_TARGET_DIR
  AUTH_JWKS_FILE AUTH_ISSUER AUTH_AUDIENCE AUTH_ISSUER_KEY_FILE)
((KAFKA_BROKERS == 1)) || STACK_ENV_VARS+=(KAFKA_BROKERS KAFKA_TOPIC_REPLICATION KAFKA_TOPIC_MIN_ISR)
