#!/usr/bin/env bash
# Local Apache Kafka in KRaft mode from Maven Central jars, no Docker: one node (default) or, with
# KAFKA_BROKERS=3, a three-node cluster (each node broker + controller, a 3-voter quorum).
#
#   scripts/stack/kafka.sh start|stop|restart|status|reset|bootstrap
#   scripts/stack/kafka.sh node-pid N|kill-node N|stop-node N|start-node N|leader TOPIC PARTITION
#   (reset = stop and wipe the Kafka data dir; bootstrap = print the comma-separated bootstrap list;
#    the node commands are for fault tests: kill-node is SIGKILL by pid, start-node waits until the
#    node is back in the ISR, leader prints the node id leading a partition)
#
# One node (KAFKA_BROKERS=1): pid name kafka, PLAINTEXT 127.0.0.1:$EVENTFOLD_KAFKA_PORT (9092),
#   CONTROLLER 127.0.0.1:$EVENTFOLD_KAFKA_CONTROLLER_PORT (9093), data $DATA_DIR/kafka, log $LOG_DIR/kafka.log.
# Cluster (KAFKA_BROKERS=3): node N has pid name kafka-N, PLAINTEXT $EVENTFOLD_KAFKA_PORT + 2*(N-1)
#   (9092, 9094, 9096), CONTROLLER the port after it (9093, 9095, 9097), data
#   $DATA_DIR/kafka-cluster/node-N, log $LOG_DIR/kafka-N.log. Replication factor 3, min ISR 2.
# Jars:  $DOWNLOADS/kafka-<version>/libs (resolved once from infra/kafka/pom.xml)
# Topics are not auto-created (auto.create.topics.enable=false): create them explicitly.
source "$(dirname "$0")/lib.sh"
kafka_check_brokers

NAME=kafka
POM_DIR="$EVENTFOLD_ROOT/infra/kafka"
LOG4J_CONF="$POM_DIR/log4j2.properties"
# Single source of truth for the version: the helper pom.
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM_DIR/pom.xml")"
[[ -n "$KAFKA_VERSION" ]] || die "$NAME: cannot read <kafka.version> from $POM_DIR/pom.xml"
KAFKA_LIBS="$DOWNLOADS/kafka-$KAFKA_VERSION/libs"
BOOTSTRAP="$(kafka_bootstrap)"
READY_TIMEOUT="${EVENTFOLD_KAFKA_READY_TIMEOUT:-120}"   # seconds
# How long start-node waits for the restarted node to be back in every ISR it belongs to.
ISR_TIMEOUT="${EVENTFOLD_KAFKA_ISR_TIMEOUT:-60}"        # seconds
if ((KAFKA_BROKERS == 1)); then
  KAFKA_ROOT="$DATA_DIR/kafka"
  # JVM heap of the server: 2 GB for the one broker the benchmarks run against.
  KAFKA_HEAP_OPTS="${EVENTFOLD_KAFKA_HEAP_OPTS:--Xms2g -Xmx2g}"
else
  KAFKA_ROOT="$DATA_DIR/kafka-cluster"
  # Three JVMs next to the rest of the stack: a smaller heap each.
  KAFKA_HEAP_OPTS="${EVENTFOLD_KAFKA_HEAP_OPTS:--Xms768m -Xmx768m}"
fi
KAFKA_CLIENT_PROPS="$KAFKA_ROOT/client.properties"
CLUSTER_ID_FILE="$KAFKA_ROOT/cluster.id"
# Garbage collector. ZGC: on two cores G1's young pauses took 15-30 ms every 0.6-3 s under the relay
# benchmark (1.1-1.8% of the time stopped, the whole tail of the commit-to-ack lag); ZGC's pauses are
# below a millisecond.
KAFKA_GC_OPTS="${EVENTFOLD_KAFKA_GC_OPTS:--XX:+UseZGC}"

# Per-node paths and ports.
node_data() { if ((KAFKA_BROKERS == 1)); then printf '%s' "$KAFKA_ROOT"; else printf '%s/node-%s' "$KAFKA_ROOT" "$1"; fi; }
node_ctrl_port() {
  if ((KAFKA_BROKERS == 1)); then printf '%s' "$EVENTFOLD_KAFKA_CONTROLLER_PORT"
  else printf '%s' $(($(kafka_node_port "$1") + 1)); fi
}
node_ctrl_var() { if ((KAFKA_BROKERS == 1)); then printf EVENTFOLD_KAFKA_CONTROLLER_PORT; else printf EVENTFOLD_KAFKA_PORT; fi; }

usage() {
  printf '[stack] usage: %s {start|stop|restart|status|reset|bootstrap|node-pid N|kill-node N|stop-node N|start-node N|leader TOPIC PARTITION}\n' "$0" >&2
  exit 2
}

# check_node N: N is a node of the chosen mode (1..KAFKA_BROKERS), else exit 2.
check_node() {
  if [[ ! "${1:-}" =~ ^[0-9]+$ ]] || (($1 < 1 || $1 > KAFKA_BROKERS)); then
    printf '[stack] error: kafka: node %s: expected a node number from 1 to %s (KAFKA_BROKERS=%s)\n' \
      "${1:-<missing>}" "$KAFKA_BROKERS" "$KAFKA_BROKERS" >&2
    exit 2
  fi
}

# Resolve the jars once; re-resolve when the helper pom changes (e.g. a version bump of log4j).
ensure_jars() {
  local sum; sum="$(sha256sum "$POM_DIR/pom.xml" | cut -d' ' -f1)"
  if [[ -f "$KAFKA_LIBS/.complete" && "$(cat "$KAFKA_LIBS/.pom.sha256" 2>/dev/null)" != "$sum" ]]; then
    log "$NAME: infra/kafka/pom.xml changed; re-resolving jars"
    rm -rf "$KAFKA_LIBS"
  fi
  maven_copy_deps "$POM_DIR" "$KAFKA_LIBS"
  [[ -f "$KAFKA_LIBS/.pom.sha256" ]] || printf '%s\n' "$sum" >"$KAFKA_LIBS/.pom.sha256"
}

# Short-lived Kafka tools (StorageTool, TopicCommand, ...) on the downloaded classpath:
# small heap, fast JIT, WARN logging.  Usage: "${KAFKA_TOOL[@]}" MAINCLASS ARGS...
KAFKA_TOOL=(java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$LOG4J_CONF" -Deventfold.log.level=WARN
  -XX:ErrorFile="$LOG_DIR/kafka-tool-hs_err_%p.log" -cp "$KAFKA_LIBS/*")

# The node-specific and replication lines of a node's server.properties.
node_properties() {
  local n="$1" port ctrl
  port="$(kafka_node_port "$n")"; ctrl="$(node_ctrl_port "$n")"
  if ((KAFKA_BROKERS == 1)); then
    cat <<EOF
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctrl
advertised.listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctrl
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=127.0.0.1:$ctrl
log.dirs=$(node_data "$n")/logs

# One node: every internal topic must have replication factor 1 / min ISR 1, or groups and
# transactions hang waiting for replicas that never come.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1
EOF
  else
    local voters="" v
    for ((v = 1; v <= KAFKA_BROKERS; v++)); do voters+="${voters:+,}$v@127.0.0.1:$(node_ctrl_port "$v")"; done
    cat <<EOF
process.roles=broker,controller
node.id=$n
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctrl
advertised.listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctrl
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
# A static voter set: it lives in this file, not in the metadata log, so moving the ports
# (EVENTFOLD_KAFKA_PORT) only needs a restart.
controller.quorum.voters=$voters
log.dirs=$(node_data "$n")/logs

# Three nodes: every partition, internal ones included, has three replicas and takes an acks=all
# write only while two are in sync, so one node can die without losing an acknowledged record.
# A replica that fell out of the ISR never becomes leader (that would drop what it missed).
offsets.topic.replication.factor=3
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
EOF
  fi
}

write_config() {
  local n="$1" data; data="$(node_data "$n")"
  mkdir -p "$data/logs"
  local props="$data/server.properties" tmp="$data/server.properties.tmp"
  {
    echo "# Generated by scripts/stack/kafka.sh on every start; edits are overwritten."
    node_properties "$n"
    cat <<EOF
group.initial.rebalance.delay.ms=0

num.partitions=3
# Topics are created explicitly (internal topics such as __consumer_offsets are still created on demand).
auto.create.topics.enable=false
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=168
EOF
  } >"$tmp"
  mv "$tmp" "$props"
  cat >"$KAFKA_CLIENT_PROPS" <<EOF
# Admin-client settings for the readiness probe (fail fast instead of retrying for a minute).
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
}

# Format a node's storage once. One node: a single-voter dynamic quorum (--standalone); changing the
# controller port later is fine, the single voter re-registers its new endpoint on start (checked
# with 4.1.2). Cluster: the static voters of server.properties; every node shares one cluster id.
format_storage() {
  local n="$1" data name; data="$(node_data "$n")"; name="$(kafka_node_name "$n")"
  [[ -f "$data/logs/meta.properties" ]] && return 0
  if [[ ! -s "$CLUSTER_ID_FILE" ]]; then
    mkdir -p "$KAFKA_ROOT"
    "${KAFKA_TOOL[@]}" kafka.tools.StorageTool random-uuid >"$CLUSTER_ID_FILE.tmp" \
      || { rm -f "$CLUSTER_ID_FILE.tmp"; die "$name: StorageTool random-uuid failed"; }
    mv "$CLUSTER_ID_FILE.tmp" "$CLUSTER_ID_FILE"
  fi
  log "$name: formatting storage in $data/logs (cluster id $(cat "$CLUSTER_ID_FILE"))"
  local mode=()
  ((KAFKA_BROKERS == 1)) && mode=(--standalone)
  "${KAFKA_TOOL[@]}" kafka.tools.StorageTool format -t "$(cat "$CLUSTER_ID_FILE")" -c "$data/server.properties" \
    "${mode[@]}" --ignore-formatted >>"$(log_file "$name")" 2>&1 \
    || fail_start "$name" "kafka.tools.StorageTool format failed"
}

# Readiness probe: a real metadata round trip through the admin client.
metadata_ok() {
  timeout 30 "${KAFKA_TOOL[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
    --command-config "$KAFKA_CLIENT_PROPS" --list
}

# all_brokers_unfenced: the cluster's metadata lists every node as a live broker (a topic with
# replication factor 3 cannot be created before).
all_brokers_unfenced() {
  local count
  count="$(timeout 30 "${KAFKA_TOOL[@]}" org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "$BOOTSTRAP" --command-config "$KAFKA_CLIENT_PROPS" 2>/dev/null | grep -c 'isFenced: false')" || true
  ((count == KAFKA_BROKERS))
}

# describe [TOPIC]: TopicCommand --describe of one topic or of all of them.
describe() {
  local topic=()
  [[ -n "${1:-}" ]] && topic=(--topic "$1")
  timeout 30 "${KAFKA_TOOL[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
    --command-config "$KAFKA_CLIENT_PROPS" --describe "${topic[@]}"
}

# in_every_isr N: no partition lists node N as a replica but not as in sync.
in_every_isr() {
  local out; out="$(describe)" || return 1
  awk -v node="$1" '
    /Partition: / {
      replicas = ""; isr = ""
      for (i = 1; i < NF; i++) { if ($i == "Replicas:") replicas = $(i + 1); if ($i == "Isr:") isr = $(i + 1) }
      if (("," replicas ",") ~ ("," node ",") && ("," isr ",") !~ ("," node ",")) missing++
    }
    END { exit missing > 0 }' <<<"$out"
}

log_says_started() {
  tail -n "+$2" "$(log_file "$1")" 2>/dev/null | grep -q 'Kafka Server started'
}

# The other mode's nodes must not be running: they would hold the same ports.
refuse_other_mode() {
  local other
  if ((KAFKA_BROKERS == 1)); then
    for other in kafka-1 kafka-2 kafka-3; do
      is_running "$other" && die "$NAME: the 3-broker cluster is running ($other); stop it first: KAFKA_BROKERS=3 $0 stop"
    done
  elif is_running kafka; then
    die "$NAME: the one-broker Kafka is running; stop it first: KAFKA_BROKERS=1 $0 stop"
  fi
  return 0
}

# launch_node N: start node N in the background (no wait); prints the first log line to watch.
launch_node() {
  local n="$1" name port ctrl data lf
  name="$(kafka_node_name "$n")"; port="$(kafka_node_port "$n")"; ctrl="$(node_ctrl_port "$n")"
  data="$(node_data "$n")"; lf="$(log_file "$name")"
  rm -f "$(pid_file "$name")"
  require_free_port "$name" "$port" EVENTFOLD_KAFKA_PORT
  require_free_port "$name" "$ctrl" "$(node_ctrl_var)"
  write_config "$n"
  format_storage "$n"
  local from; from=$(( $(wc -l <"$lf" 2>/dev/null || echo 0) + 1 ))
  log "$name: starting Kafka $KAFKA_VERSION (KRaft node $n of $KAFKA_BROKERS) on 127.0.0.1:$port"
  # Run from the data dir so nothing the JVM might drop in its working directory lands in the repo.
  (
    cd "$data"
    # shellcheck disable=SC2086  # KAFKA_HEAP_OPTS and KAFKA_GC_OPTS are lists of JVM flags
    start_daemon "$name" java $KAFKA_HEAP_OPTS -server $KAFKA_GC_OPTS \
      -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
      -XX:ErrorFile="$LOG_DIR/$name-hs_err_%p.log" \
      -Dlog4j2.configurationFile="$LOG4J_CONF" -Dkafka.logs.dir="$LOG_DIR" \
      -cp "$KAFKA_LIBS/*" kafka.Kafka "$data/server.properties"
  )
  printf '%s' "$from"
}

# start_nodes N...: launch the nodes together (a cluster node only finishes starting once a quorum
# of controllers is up) and wait until each serves and the cluster answers with all brokers.
start_nodes() {
  local n name started=() from=()
  command -v java >/dev/null || die "$NAME: java not found (Java 17+ is needed)"
  ensure_jars
  for n in "$@"; do
    from[n]="$(launch_node "$n")"
    started+=("$(kafka_node_name "$n")")
  done
  # Not ready in time (or died): do not leave half-started nodes or stale pid files behind.
  STARTED_NAMES=("${started[@]}")
  trap 'stop_names "${STARTED_NAMES[@]}"' EXIT
  local deadline=$((SECONDS + READY_TIMEOUT))
  left() { printf '%s' $(( deadline > SECONDS ? deadline - SECONDS : 1 )); }
  for n in "$@"; do
    name="$(kafka_node_name "$n")"
    wait_until "$name" "$(left)" log_says_started "$name" "${from[n]}"
    wait_until "$name" "$(left)" port_in_use "$(kafka_node_port "$n")"
  done
  name="$(kafka_node_name "$1")"
  wait_until "$name" "$(left)" metadata_ok
  ((KAFKA_BROKERS == 1)) || wait_until "$name" "$(left)" all_brokers_unfenced
  trap - EXIT
  for n in "$@"; do
    name="$(kafka_node_name "$n")"
    log "$name ready on 127.0.0.1:$(kafka_node_port "$n") (pid $(cat "$(pid_file "$name")"), log $(log_file "$name"))"
  done
}

# stop_names NAME...: SIGTERM every live node at once (a node stopped alone after the others would
# wait for a controller quorum that is gone), wait, then SIGKILL what is left; remove the pid files.
stop_names() {
  local name pid pids=() timeout=40
  for name in "$@"; do
    pid="$(cat "$(pid_file "$name")" 2>/dev/null || true)"
    if pid_alive "$pid"; then
      log "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  local deadline=$((SECONDS + timeout))
  for pid in "${pids[@]}"; do
    while pid_alive "$pid"; do
      if ((SECONDS >= deadline)); then
        log "kafka pid $pid did not stop in ${timeout}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.2
    done
  done
  for name in "$@"; do rm -f "$(pid_file "$name")"; done
}

all_names() { local n; for ((n = 1; n <= KAFKA_BROKERS; n++)); do kafka_node_name "$n"; echo; done; }

cmd_start() {
  refuse_other_mode
  local n name missing=()
  for ((n = 1; n <= KAFKA_BROKERS; n++)); do
    name="$(kafka_node_name "$n")"
    if is_running "$name"; then
      log "$name already running (pid $(cat "$(pid_file "$name")")) on 127.0.0.1:$(kafka_node_port "$n")"
    else
      missing+=("$n")
    fi
  done
  ((${#missing[@]} == 0)) || start_nodes "${missing[@]}"
}

# The live nodes of the other mode (a cluster started with KAFKA_BROKERS=3 and stopped without it).
other_mode_running() {
  local name others=(kafka-1 kafka-2 kafka-3)
  ((KAFKA_BROKERS == 1)) || others=(kafka)
  for name in "${others[@]}"; do is_running "$name" && printf '%s\n' "$name"; done
  return 0
}

# stop also stops the other mode's nodes, so `make down` never leaves a cluster behind.
cmd_stop() {
  local names; mapfile -t names < <(all_names; other_mode_running)
  stop_names "${names[@]}"
}

cmd_status() {
  local n name
  for ((n = 1; n <= KAFKA_BROKERS; n++)); do
    status_line "$(kafka_node_name "$n")" "127.0.0.1:$(kafka_node_port "$n")"
  done
  for name in $(other_mode_running); do
    status_line "$name" "(the other KAFKA_BROKERS mode; stop it with: scripts/stack/kafka.sh stop)"
  done
}

cmd_reset() {
  cmd_stop
  log "$NAME: removing $KAFKA_ROOT"
  rm -rf "$KAFKA_ROOT"
}

# node_pid N: the live pid of node N, or exit 1 saying it is not running.
node_pid() {
  local name pid; name="$(kafka_node_name "$1")"
  pid="$(cat "$(pid_file "$name")" 2>/dev/null || true)"
  pid_alive "$pid" || die "$name is not running"
  printf '%s\n' "$pid"
}

cmd_kill_node() {
  local name pid; name="$(kafka_node_name "$1")"; pid="$(node_pid "$1")"
  log "SIGKILL $name (pid $pid)"
  kill -KILL "$pid"
  local deadline=$((SECONDS + 10))
  while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.05; done
  ! pid_alive "$pid" || die "$name (pid $pid) still alive 10 s after SIGKILL"
}

cmd_start_node() {
  local n="$1" name; name="$(kafka_node_name "$n")"
  refuse_other_mode
  if is_running "$name"; then
    log "$name already running (pid $(cat "$(pid_file "$name")"))"
  else
    start_nodes "$n"
  fi
  ((KAFKA_BROKERS == 1)) && return 0
  local deadline=$((SECONDS + ISR_TIMEOUT)) started=$SECONDS
  until in_every_isr "$n" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "warning: $name serves but is not yet in every ISR after ${ISR_TIMEOUT}s"
      return 0
    fi
    sleep 0.5
  done
  log "$name is in every ISR it belongs to ($((SECONDS - started))s after it served)"
}

cmd_leader() {
  local topic="${1:-}" partition="${2:-}"
  [[ -n "$topic" && "$partition" =~ ^[0-9]+$ ]] || usage
  local out leader
  out="$(describe "$topic" 2>&1)" || die "kafka: cannot describe topic $topic: $(grep -m1 '^Error' <<<"$out" || true)"
  leader="$(awk -v p="$partition" '
    /Partition: / {
      for (i = 1; i < NF; i++) { if ($i == "Partition:") part = $(i + 1); if ($i == "Leader:") lead = $(i + 1) }
      if (part == p) { print lead; exit }
    }' <<<"$out")"
  [[ -n "$leader" ]] || die "kafka: topic $topic has no partition $partition"
  [[ "$leader" =~ ^[0-9]+$ ]] || die "kafka: partition $topic-$partition has no leader (Leader: $leader)"
  printf '%s\n' "$leader"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  restart) cmd_stop; cmd_start ;;
  reset) cmd_reset ;;
  bootstrap) printf '%s\n' "$BOOTSTRAP" ;;
  node-pid) check_node "${2:-}"; node_pid "$2" ;;
  kill-node) check_node "${2:-}"; cmd_kill_node "$2" ;;
  stop-node) check_node "${2:-}"; stop_names "$(kafka_node_name "$2")" ;;
  start-node) check_node "${2:-}"; cmd_start_node "$2" ;;
  leader) cmd_leader "${2:-}" "${3:-}" ;;
  *) usage ;;
esac
