#!/usr/bin/env bash
# Neo4j 5.26 LTS (Community), embedded from Maven Central, Bolt on 127.0.0.1:$EVENTFOLD_NEO4J_BOLT_PORT.
#   scripts/stack/neo4j.sh {start|stop|status}
# Jars: $DOWNLOADS/neo4j-<version>/lib (resolved once from infra/neo4j/pom.xml); launcher compiled once
# from infra/neo4j/Launcher.java into $DOWNLOADS/neo4j-<version>/launcher. Home/data: $DATA_DIR/neo4j.
# Auth disabled: any credentials work (the project uses NEO4J_USER=neo4j NEO4J_PASSWORD=eventfold).
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

NAME=neo4j
INFRA="$EVENTFOLD_ROOT/infra/neo4j"
NEO4J_VERSION="$(sed -n 's:.*<neo4j.version>\(.*\)</neo4j.version>.*:\1:p' "$INFRA/pom.xml" | head -n1)"
[[ -n "$NEO4J_VERSION" ]] || die "neo4j: no <neo4j.version> in $INFRA/pom.xml"
DIST="$DOWNLOADS/neo4j-$NEO4J_VERSION"
LIB="$DIST/lib"
CLASSES="$DIST/launcher"
NEO4J_HOME="$DATA_DIR/neo4j"
BOLT_URL="bolt://127.0.0.1:$EVENTFOLD_NEO4J_BOLT_PORT"
READY_LINE="eventfold-neo4j ready $BOLT_URL"
NEO4J_HEAP="${EVENTFOLD_NEO4J_HEAP:-1g}"

# Compile the launcher once per source version (a single-file source run recompiles on every start).
ensure_launcher() {
  command -v javac >/dev/null || die "neo4j: javac not found (install a JDK 17: apt-get install -y openjdk-17-jdk-headless)"
  local sum; sum="$(sha256sum "$INFRA/Launcher.java" | cut -d' ' -f1)"
  if [[ -f "$CLASSES/Launcher.class" && "$(cat "$CLASSES/.source.sha256" 2>/dev/null)" == "$sum" ]]; then
    return 0
  fi
  log "neo4j: compiling $INFRA/Launcher.java into $CLASSES"
  rm -rf "$CLASSES.tmp"; mkdir -p "$CLASSES.tmp"
  javac -nowarn -cp "$LIB/*" -d "$CLASSES.tmp" "$INFRA/Launcher.java" >&2 \
    || die "neo4j: compiling Launcher.java failed"
  echo "$sum" >"$CLASSES.tmp/.source.sha256"
  rm -rf "$CLASSES"; mv "$CLASSES.tmp" "$CLASSES"
}

# Ready = this run printed the ready line (after the last start marker) and Bolt accepts connections.
neo4j_ready() {
  port_in_use "$EVENTFOLD_NEO4J_BOLT_PORT" || return 1
  awk -v ready="$READY_LINE" '
    /^===== .* starting neo4j =====$/ { seen = 0 }
    index($0, ready) == 1 { seen = 1 }
    END { exit !seen }' "$(log_file "$NAME")"
}

cmd_start() {
  if is_running "$NAME"; then
    log "neo4j: already running (pid $(cat "$(pid_file "$NAME")")); checking readiness"
  else
    rm -f "$(pid_file "$NAME")"
    command -v java >/dev/null || die "neo4j: java not found (Java 17+ needed)"
    require_free_port "$NAME" "$EVENTFOLD_NEO4J_BOLT_PORT" EVENTFOLD_NEO4J_BOLT_PORT
    maven_copy_deps "$INFRA" "$LIB"
    ensure_launcher
    mkdir -p "$NEO4J_HOME"
    log "neo4j: starting Neo4j $NEO4J_VERSION on $BOLT_URL (log $(log_file "$NAME"), Neo4j's own log $NEO4J_HOME/logs/debug.log)"
    start_daemon "$NAME" java \
      "-Xms256m" "-Xmx$NEO4J_HEAP" \
      -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -XX:-OmitStackTraceInFastThrow \
      -XX:+UnlockExperimentalVMOptions -XX:+TrustFinalNonStaticFields -XX:+DisableExplicitGC \
      -Djdk.nio.maxCachedBufferSize=1024 -Dio.netty.tryReflectionSetAccessible=true \
      -Dlog4j2.disable.jmx=true -Dfile.encoding=UTF-8 \
      --add-opens=java.base/java.nio=ALL-UNNAMED \
      --add-opens=java.base/java.io=ALL-UNNAMED \
      --add-opens=java.base/sun.nio.ch=ALL-UNNAMED \
      --add-opens=java.base/java.lang=ALL-UNNAMED \
      -cp "$CLASSES:$LIB/*" Launcher "$NEO4J_HOME" 127.0.0.1 "$EVENTFOLD_NEO4J_BOLT_PORT"
  fi
  wait_until "$NAME" 120 neo4j_ready
  log "neo4j: ready  $BOLT_URL  (pid $(cat "$(pid_file "$NAME")"), Neo4j $NEO4J_VERSION, auth disabled)"
}

cmd_stop() {
  if ! is_running "$NAME"; then
    rm -f "$(pid_file "$NAME")"
    log "neo4j: not running"
    return 0
  fi
  local pid; pid="$(cat "$(pid_file "$NAME")")"
  # SIGTERM runs the launcher's shutdown hook (managementService.shutdown()); SIGKILL after 30 s.
  stop_by_pid "$NAME" 30
  if pid_alive "$pid"; then die "neo4j: pid $pid still alive after stop"; fi
  log "neo4j: stopped"
}

cmd_status() {
  is_running "$NAME" || rm -f "$(pid_file "$NAME")"   # stale (dead or zombie) pid file
  status_line "$NAME" "$BOLT_URL"
}

case "${1:-}" in
  start)  cmd_start ;;
  stop)   cmd_stop ;;
  status) cmd_status ;;
  *) die "usage: $0 {start|stop|status}" ;;
esac
