#!/usr/bin/env bash
# `make test-k8s`: the Helm chart against a real Kubernetes control plane (scripts/k8s/cluster.sh:
# kube-apiserver, kube-controller-manager and kube-scheduler on kine on the stack's PostgreSQL, with
# simulated kwok nodes). Starts the cluster when it is not running and stops it again afterwards.
#
#   scripts/k8s/test.sh
#
#  1. helm install --wait of helm/eventfold (namespace eventfold-k8s-test) pointed at the stack's
#     PostgreSQL, Kafka, registry and Neo4j, with the stack's token issuer (AUTH_*, the JWKS inline);
#     the pre-install hook Jobs (migrations, then schemas) complete before any Deployment exists
#  2. every Deployment available, every pod scheduled on a node; each Service has endpoints; the
#     migrations Job's container and the command-service container run as local processes with their
#     pods' environment (scripts/k8s/podrun.py): the migrations apply, the readinessProbe answers 200
#  3. helm upgrade with a changed value (log.level) runs the hooks again and rolls every Deployment
#     (new ReplicaSet, every pod replaced); helm rollback rolls them back to the first template
#  4. the projector Deployment scaled 1 -> 3 -> 1; its HPA accepted and read by the HPA controller
#  5. a PDB: an eviction within maxUnavailable is granted (201), one below minAvailable is refused (429)
#  6. kubectl apply --dry-run=server of every values scenario of scripts/helm/check.sh, on Kubernetes 1.36
#     and 1.29 (the oldest minor the chart claims; an API server of its own, for this step only), the
#     ServiceMonitor against the Prometheus Operator's own CRD
#  7. helm uninstall --wait leaves nothing of the release in the namespace
#
# Needs the stack (`make up`: PostgreSQL, Kafka, the registry, Neo4j), Go >= 1.26 for the first build,
# openssl, curl and psql. Prints one line per check (VERBOSE=1: and its output) and "N passed, N failed";
# exits 1 when anything failed. KEEP=1 leaves the release and the namespaces in place.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CHART="$ROOT/helm/eventfold"
CACHE="${EVENTFOLD_CACHE:-$HOME/.cache/eventfold}"
NS="${EVENTFOLD_K8S_TEST_NAMESPACE:-eventfold-k8s-test}"
RELEASE=eventfold
TIMEOUT="${EVENTFOLD_K8S_TEST_TIMEOUT:-180s}"
start=$SECONDS

fatal() { printf 'test-k8s: %s\n' "$*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- 0. what it needs: one line naming what is missing
for t in openssl curl psql python3; do
  command -v "$t" >/dev/null || fatal "$t not found (scripts/bootstrap.sh installs it)"
done
[[ -x "$CACHE/downloads/k8s/bin/kwok" ]] || command -v go >/dev/null \
  || fatal "go not found: Go >= 1.26 builds the Kubernetes binaries (scripts/bootstrap.sh installs it)"
ENV_OUT="$("$ROOT/scripts/stack/stack.sh" env 2>/dev/null)" || fatal "scripts/stack/stack.sh env failed"
eval "$ENV_OUT"
for dep in "PostgreSQL ${DATABASE_URL##*@}" "Kafka $KAFKA_BOOTSTRAP_SERVERS" \
  "schema-registry ${SCHEMA_REGISTRY_URL#http://}" "Neo4j ${NEO4J_URI#bolt://}"; do
  name="${dep%% *}" addr="${dep#* }"; addr="${addr%%/*}"; addr="${addr%%,*}"
  port_open "${addr##*:}" || fatal "the stack's $name does not answer at $addr: run \`make up\` first"
done
[[ -f "${AUTH_JWKS_FILE:-}" ]] || fatal "the stack's JWKS ($AUTH_JWKS_FILE) is missing: run \`make up\` first"

HELM_BIN="$("$ROOT/scripts/helm/install-tools.sh" 2>/dev/null)" || fatal "installing helm failed (scripts/helm/install-tools.sh)"
source "$HERE/lib.sh"   # after the checks above: its helpers print [k8s]
set +e                  # lib.sh sets -e; a failed check must not end the run
export PATH="$K8S_BIN:$HELM_BIN:$PATH" KUBECONFIG="$KUBECONFIG_ADMIN"

started_cluster=0
if ! is_running k8s-apiserver; then
  printf '\n==> starting the local control plane (scripts/k8s/cluster.sh up)\n' >&2
  "$HERE/cluster.sh" up || { "$HERE/cluster.sh" down; fatal "the local control plane did not start (logs: $LOG_DIR)"; }
  started_cluster=1
fi

WORK="$(mktemp -d)"
cleanup() {
  local rc=$? p
  for p in $(jobs -p); do kill "$p" 2>/dev/null; done
  if [[ -z "${KEEP:-}" ]]; then
    helm uninstall "$RELEASE" -n "$NS" --wait >/dev/null 2>&1
    kubectl delete namespace "$NS" "$NS-dry" --ignore-not-found --wait=false >/dev/null 2>&1
    kubectl delete crd servicemonitors.monitoring.coreos.com --ignore-not-found --wait=false >/dev/null 2>&1
  fi
  stop_by_pid k8s-apiserver-v1.29.6 30 2>/dev/null
  ((started_cluster)) && "$HERE/cluster.sh" down
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

printf '\n==> the chart on a local control plane (%s, %s, %s)\n' "$(kube-apiserver --version)" \
  "helm $(helm version --template '{{.Version}}')" "$(kubectl get nodes -o name | wc -l) kwok nodes" >&2

passed=0
failed=0
check() {
  local name="$1"; shift
  local log="$WORK/log.$((passed + failed))"
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1)); printf '  ok    %s\n' "$name"
    if [[ -n "${VERBOSE:-}" ]]; then sed 's/^/        /' "$log"; fi
    return 0
  else
    failed=$((failed + 1)); printf '  FAIL  %s\n' "$name"; tail -n 30 "$log" | sed 's/^/        /'
    return 1
  fi
}

# A fresh namespace.
kubectl delete namespace "$NS" --ignore-not-found --wait=true --timeout=120s >/dev/null 2>&1
kubectl create namespace "$NS" >/dev/null || fatal "cannot create namespace $NS"

# Values: the stack's addresses as the external services, the stack's issuer. PostgreSQL: a database of
# this test's own (APP_DB, made anew each run), the stack's superuser as the migrator and the stack's
# command-service login role (its local password is its name), so that the migrations Job's and the
# command-service pod's environments can be run for real (podrun.py, step 2).
pg_hostport="${DATABASE_URL##*@}"; pg_hostport="${pg_hostport%%/*}"
pg_userpass="${DATABASE_URL#*://}"; pg_userpass="${pg_userpass%%@*}"
APP_DB="${EVENTFOLD_K8S_APP_DATABASE:-eventfold_k8s_app}"
psql "${DATABASE_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS \"$APP_DB\"" -c "CREATE DATABASE \"$APP_DB\"" >/dev/null \
  || fatal "cannot make the database $APP_DB on the stack's PostgreSQL"
cat >"$WORK/values.yaml" <<EOF
existingSecret: eventfold-credentials
image: {registry: eventfold.local, pullPolicy: Never}
postgresql:
  host: "${pg_hostport%:*}"
  port: ${pg_hostport##*:}
  database: $APP_DB
  users:
    migrator: {username: "${pg_userpass%%:*}"}
    commandService: {username: ef_command_service}
kafka: {bootstrapServers: "$KAFKA_BOOTSTRAP_SERVERS", replicationFactor: 1}
schemaRegistry: {url: "$SCHEMA_REGISTRY_URL"}
neo4j: {uri: "$NEO4J_URI"}
auth: {issuer: "$AUTH_ISSUER", audience: "$AUTH_AUDIENCE"}
EOF
VALUES=(-f "$WORK/values.yaml" --set-file "auth.jwks.inline=$AUTH_JWKS_FILE")

# The credentials Secret: every secretKeyRef the rendering names; real passwords for the migrator and
# the command-service (podrun.py logs in with them), random hex for the rest (nothing logs in with them).
helm template "$RELEASE" "$CHART" -n "$NS" "${VALUES[@]}" >"$WORK/render.yaml" || fatal "helm template failed"
python3 - "$WORK/render.yaml" >"$WORK/secret-keys" <<'PY' || fatal "reading the secretKeyRefs failed"
import re, sys
keys = set()
text = open(sys.argv[1]).read()
for m in re.finditer(r"secretKeyRef:\s*\n\s*name:\s*(\S+)\s*\n\s*key:\s*(\S+)", text):
    keys.add((m.group(1).strip('"'), m.group(2).strip('"')))
for m in re.finditer(r"secretKeyRef:\s*\n\s*key:\s*(\S+)\s*\n\s*name:\s*(\S+)", text):
    keys.add((m.group(2).strip('"'), m.group(1).strip('"')))
for name, key in sorted(keys):
    print(name, key)
PY
secret_value() {  # KEY: the two real passwords, random hex for the rest
  case "$1" in
    postgresql-migrator-password) printf '%s' "${pg_userpass#*:}" ;;
    postgresql-commandService-password) printf ef_command_service ;;
    *) openssl rand -hex 16 ;;
  esac
}
while read -r sname _; do
  args=()
  while read -r n k; do [[ "$n" == "$sname" ]] && args+=(--from-literal "$k=$(secret_value "$k")"); done <"$WORK/secret-keys"
  kubectl -n "$NS" get secret "$sname" >/dev/null 2>&1 || kubectl -n "$NS" create secret generic "$sname" "${args[@]}" >/dev/null
done < <(awk '{print $1}' "$WORK/secret-keys" | sort -u)

# Watches of the Jobs and the Deployments (resourceVersions from kine's one revision counter).
watch() {  # KIND FILE
  kubectl -n "$NS" get "$1" -w --output-watch-events \
    -o jsonpath='{.type} {.object.metadata.name} {.object.metadata.resourceVersion} {.object.status.succeeded}{"\n"}' >"$2" 2>&1 &
}
watch jobs "$WORK/jobs.watch"
watch deployments "$WORK/deploys.watch"
sleep 1

deploys() { kubectl -n "$NS" get deploy -l "app.kubernetes.io/instance=$RELEASE" -o name; }

# --- 1. install
t0=$SECONDS
check "helm install --wait (hook Jobs, then the release)" \
  helm install "$RELEASE" "$CHART" -n "$NS" "${VALUES[@]}" --wait --timeout "$TIMEOUT"
install_s=$((SECONDS - t0))

hooks_first() {  # the hook Jobs completed (succeeded=1) before the first Deployment was added
  sleep 1
  cat "$WORK/jobs.watch"; echo ---; cat "$WORK/deploys.watch"
  local mig sch dep
  mig="$(awk '$2 ~ /-migrations$/ && $4 == 1 {print $3; exit}' "$WORK/jobs.watch")"
  sch="$(awk '$2 ~ /-schemas$/ && $4 == 1 {print $3; exit}' "$WORK/jobs.watch")"
  dep="$(awk '$1 == "ADDED" {print $3}' "$WORK/deploys.watch" | sort -n | head -n 1)"
  echo "migrations succeeded at rv $mig, schemas at rv $sch, first Deployment at rv $dep"
  [[ -n "$mig" && -n "$sch" && -n "$dep" ]] && ((mig < sch && sch < dep))
}
check "the migrations Job, then the schemas Job, completed before any Deployment existed" hooks_first
check "the hook Jobs are gone after success (hook-delete-policy)" \
  bash -c "[[ -z \"\$(kubectl -n '$NS' get jobs -o name)\" ]]"

all_ready() {
  local d n=0
  for d in $(deploys); do
    kubectl -n "$NS" rollout status "$d" --timeout=60s || return 1; n=$((n + 1))
  done
  echo "$n Deployments"; ((n == 4))
  kubectl -n "$NS" get pods -o wide
  [[ -z "$(kubectl -n "$NS" get pods -o jsonpath='{range .items[?(@.spec.nodeName=="")]}{.metadata.name}{"\n"}{end}')" ]]
}
check "4 Deployments (command-service, relay, projector-graph, projector-opportunities) rolled out on the nodes" all_ready

endpoints_ok() {
  local s
  for s in $(kubectl -n "$NS" get svc -o name); do
    n="$(kubectl -n "$NS" get endpointslices -l "kubernetes.io/service-name=${s#service/}" \
      -o jsonpath='{range .items[*].endpoints[*]}{.conditions.ready}{"\n"}{end}' | grep -c true)"
    echo "$s: $n ready endpoints"; ((n > 0)) || return 1
  done
}
check "every Service has ready endpoints (EndpointSlice controller)" endpoints_ok

# --- 2b. what kwok does not run, run as local processes with the pods' environment (podrun.py):
# the migrations hook Job's container (its spec from `helm get hooks`) against $APP_DB, then the
# command-service container until its readinessProbe answers 200.
BIN_DIR="${CARGO_TARGET_DIR:-$CACHE/target}/debug"
podrun_job() {  # the migrations hook Job's pod template
  helm get hooks "$RELEASE" -n "$NS" | yaml2json | python3 -c '
import json, sys
for item in json.load(sys.stdin):
    d = item.get("object") or {}
    if d.get("kind") == "Job" and d["metadata"]["name"].endswith("-migrations"):
        print(json.dumps(d["spec"]["template"]["spec"]))' >"$WORK/migrations.spec.json"
  [[ -s "$WORK/migrations.spec.json" ]] || { echo "no migrations Job in helm get hooks"; return 1; }
  python3 "$HERE/podrun.py" --spec "$WORK/migrations.spec.json" --namespace "$NS" --bin-dir "$BIN_DIR" --job --timeout 120 &&
    psql "${DATABASE_URL%/*}/$APP_DB" -Atc "select count(*) || ' migrations applied' from _sqlx_migrations"
}
check "the migrations Job's container, run with its pod's environment, migrates $APP_DB" podrun_job
podrun_cmd() {
  kubectl -n "$NS" get deploy "$RELEASE-command-service" -o jsonpath='{.spec.template.spec}' >"$WORK/cmd.spec.json" &&
    python3 "$HERE/podrun.py" --spec "$WORK/cmd.spec.json" --namespace "$NS" --bin-dir "$BIN_DIR" --timeout 60
}
check "the command-service container, run with its pod's environment, passes its readinessProbe" podrun_cmd

# --- 3. upgrade with a changed value, rollback
pod_names() { kubectl -n "$NS" get pods -l "app.kubernetes.io/instance=$RELEASE" -o jsonpath='{.items[*].metadata.name}' | tr ' ' '\n' | sort; }
revisions() { local d; for d in $(deploys); do printf '%s %s\n' "$d" "$(kubectl -n "$NS" get "$d" -o jsonpath='{.metadata.annotations.deployment\.kubernetes\.io/revision}')"; done; }
rolled() {  # WANT_REVISION OLD_PODS_FILE
  local d r
  revisions
  while read -r d r; do [[ "$r" == "$1" ]] || { echo "$d at revision $r, want $1"; return 1; }; done < <(revisions)
  all_ready >/dev/null || return 1
  comm -12 "$2" <(pod_names) | grep . && { echo "pods above were not replaced"; return 1; }
  return 0
}
pod_names >"$WORK/pods.1"
: >"$WORK/jobs.watch"
check "helm upgrade --set log.level=debug --wait (pre-upgrade hooks run again)" \
  helm upgrade "$RELEASE" "$CHART" -n "$NS" "${VALUES[@]}" --set log.level=debug --wait --timeout "$TIMEOUT"
check "  the upgrade's hook Jobs ran and completed" bash -c "sleep 1; grep -E -- '-migrations .* 1\$' '$WORK/jobs.watch' && grep -E -- '-schemas .* 1\$' '$WORK/jobs.watch'"
check "  every Deployment rolled: revision 2, every pod replaced" rolled 2 "$WORK/pods.1"
check "  the ConfigMaps say RUST_LOG=debug" bash -c \
  "kubectl -n '$NS' get cm -l app.kubernetes.io/instance=$RELEASE -o jsonpath='{range .items[*]}{.data.RUST_LOG}{\"\\n\"}{end}' | grep -c debug | grep -qv '^0$'"
pod_names >"$WORK/pods.2"
check "helm rollback to revision 1 --wait" helm rollback "$RELEASE" 1 -n "$NS" --wait --timeout "$TIMEOUT"
check "  every Deployment rolled back: revision 3, every pod replaced, RUST_LOG=info" bash -c \
  "$(declare -f rolled revisions deploys all_ready pod_names); NS='$NS' RELEASE='$RELEASE'; rolled 3 '$WORK/pods.2' && \
   ! kubectl -n '$NS' get cm -l app.kubernetes.io/instance=$RELEASE -o jsonpath='{range .items[*]}{.data.RUST_LOG}{\"\\n\"}{end}' | grep -q debug"
check "  helm history: 3 revisions, the last deployed" bash -c \
  "helm history '$RELEASE' -n '$NS' -o json | python3 -c 'import json,sys; h=json.load(sys.stdin); print(h); sys.exit(not (len(h)==3 and h[-1][\"status\"]==\"deployed\"))'"

# --- 4. scale the projector 1 -> 3 -> 1; the HPA read by its controller
PROJ="$(deploys | grep -- '-projector-graph$')"
scale_to() {
  kubectl -n "$NS" scale "$PROJ" --replicas "$1" || return 1
  local deadline=$((SECONDS + 60)) ready
  while ((SECONDS < deadline)); do
    ready="$(kubectl -n "$NS" get "$PROJ" -o jsonpath='{.status.readyReplicas}/{.status.replicas}')"
    [[ "$ready" == "$1/$1" ]] && { echo "$PROJ $ready"; return 0; }
    sleep 0.5
  done
  echo "$PROJ at $ready, want $1/$1"; return 1
}
check "projector scaled 1 -> 3 (3 ready pods)" scale_to 3
spread() {  # the chart's topologySpreadConstraints (kubernetes.io/hostname, maxSkew 1) read by the scheduler
  local sel; sel="$(kubectl -n "$NS" get "$PROJ" -o go-template='{{range $k, $v := .spec.selector.matchLabels}}{{$k}}={{$v}},{{end}}')"
  local nodes; nodes="$(kubectl -n "$NS" get pods -l "${sel%,}" --field-selector status.phase=Running \
    -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort | uniq -c)"
  echo "$nodes"; [[ "$(wc -l <<<"$nodes")" == 3 ]]
}
check "  its 3 pods spread over the 3 nodes (topologySpreadConstraints, scheduler)" spread
check "projector scaled 3 -> 1" scale_to 1
hpa_read() {
  local hpa="${PROJ#deployment.apps/}"
  kubectl -n "$NS" get hpa "$hpa" -o yaml | sed -n '/^status:/,$p'
  # The controller writes conditions; AbleToScale is set on its first pass over the HPA.
  kubectl -n "$NS" get hpa "$hpa" -o jsonpath='{.status.conditions[?(@.type=="AbleToScale")].status}' | grep -q True
}
check "projector HPA accepted (autoscaling/v2) and read by the HPA controller (status conditions)" \
  bash -c "$(declare -f hpa_read); NS='$NS' PROJ='$PROJ'; for i in \$(seq 60); do hpa_read && exit 0; sleep 1; done; exit 1"

# --- 5. PodDisruptionBudgets against the Eviction API
evict() {  # POD: prints the HTTP status of POST pods/POD/eviction
  curl -sS -o "$WORK/evict.out" -w '%{http_code}' --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    -H 'content-type: application/json' -X POST \
    -d "{\"apiVersion\":\"policy/v1\",\"kind\":\"Eviction\",\"metadata\":{\"name\":\"$1\",\"namespace\":\"$NS\"}}" \
    "$K8S_API_URL/api/v1/namespaces/$NS/pods/$1/eviction"
}
pdb_settled() {  # PDB WANT_ALLOWED
  local deadline=$((SECONDS + 60)) got
  while ((SECONDS < deadline)); do
    got="$(kubectl -n "$NS" get pdb "$1" -o jsonpath='{.status.observedGeneration}/{.metadata.generation} {.status.disruptionsAllowed}')"
    [[ "${got%% *}" == "$(kubectl -n "$NS" get pdb "$1" -o jsonpath='{.metadata.generation}/{.metadata.generation}')" && "${got#* }" == "$2" ]] && return 0
    sleep 0.5
  done
  echo "pdb $1: $got, want disruptionsAllowed $2"; return 1
}
CMD_DEP="$(deploys | grep -- '-command-service$')"; CMD_DEP="${CMD_DEP#deployment.apps/}"
RELAY_DEP="$(deploys | grep -- '-outbox-relay$')"; RELAY_DEP="${RELAY_DEP#deployment.apps/}"
evict_granted() {
  pdb_settled "$CMD_DEP" 1 || return 1
  local pod; pod="$(kubectl -n "$NS" get pods -l "app.kubernetes.io/component=command-service" -o jsonpath='{.items[0].metadata.name}')"
  local code; code="$(evict "$pod")"; echo "evict $pod: HTTP $code"; cat "$WORK/evict.out"
  [[ "$code" == 201 ]]
}
check "PDB maxUnavailable 1: evicting one of 2 command-service pods is granted (201)" evict_granted
check "helm upgrade --set relay.pdb.minAvailable=2 --wait" \
  helm upgrade "$RELEASE" "$CHART" -n "$NS" "${VALUES[@]}" --set relay.pdb.minAvailable=2 --wait --timeout "$TIMEOUT"
evict_refused() {
  pdb_settled "$RELAY_DEP" 0 || return 1
  kubectl -n "$NS" get pdb "$RELAY_DEP" -o jsonpath='{.spec}{"\n"}{.status}{"\n"}'
  local pod; pod="$(kubectl -n "$NS" get pods -l "app.kubernetes.io/component=outbox-relay" -o jsonpath='{.items[0].metadata.name}')"
  local code; code="$(evict "$pod")"; echo "evict $pod: HTTP $code"; cat "$WORK/evict.out"
  [[ "$code" == 429 ]] && grep -q 'disruption budget' "$WORK/evict.out" && kubectl -n "$NS" get pod "$pod"
}
check "PDB minAvailable 2 of 2 relays: an eviction is refused (429) and the pod stays" evict_refused

# --- 6. server-side dry-run of every values scenario of scripts/helm/check.sh, on v1.36.3 (the running
# API server) and on v1.29.6 (the oldest minor Chart.yaml claims: a second API server, on the same kine
# under its own key prefix, started for this step only)
# The ServiceMonitor (metrics.serviceMonitor.enabled) is a CRD of the Prometheus Operator: its real
# CustomResourceDefinition, from the operator's Go module (PROM_OPERATOR_VERSION, pinned; the newest
# version of that module the proxy serves), so the API server validates the chart's ServiceMonitor
# against the operator's own schema.
PROM_OPERATOR_VERSION=v0.85.0
servicemonitor_crd() {  # KUBECTL ARGS...
  local dir
  dir="$(env GOPATH="$DOWNLOADS/k8s/gopath" GOMODCACHE="$DOWNLOADS/k8s/gopath/pkg/mod" GOFLAGS=-modcacherw GOTOOLCHAIN=local \
    go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROM_OPERATOR_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -f "$dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" ]] || return 1
  "$@" apply --server-side -f "$dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" &&
    "$@" wait --for condition=Established crd/servicemonitors.monitoring.coreos.com --timeout=60s &&
    { "$@" get namespace "$NS-dry" >/dev/null 2>&1 || "$@" create namespace "$NS-dry"; }
}
dry_run() {  # VERSION VALUES_FILE KUBECTL ARGS...
  local version="$1" f="$2"; shift 2
  helm template "$RELEASE" "$CHART" -n "$NS-dry" -f "$ROOT/$f" --kube-version "$version" >"$WORK/dry.yaml" || return 1
  "$@" apply --dry-run=server -n "$NS-dry" -f "$WORK/dry.yaml" | tee "$WORK/dry.out"
  ((PIPESTATUS[0] == 0)) || return 1
  echo "$(wc -l <"$WORK/dry.out") objects accepted"
}
OLD_API_PORT="${EVENTFOLD_K8S_OLD_API_PORT:-16444}"
old_api_ready() {
  curl -fsS -m 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "https://127.0.0.1:$OLD_API_PORT/readyz" >/dev/null 2>&1
}
start_old_api() {  # VERSION
  stop_by_pid "k8s-apiserver-$1" 10 2>/dev/null
  port_in_use "$OLD_API_PORT" && { echo "port $OLD_API_PORT taken (EVENTFOLD_K8S_OLD_API_PORT)"; return 1; }
  start_daemon "k8s-apiserver-$1" "$K8S_BIN/kube-apiserver-$1" \
    --etcd-servers "http://127.0.0.1:$K8S_KINE_PORT" --etcd-prefix "/registry-$1" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$OLD_API_PORT" \
    --endpoint-reconciler-type none --service-cluster-ip-range 10.96.0.0/16 \
    --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local --authorization-mode RBAC --profiling=false
  local deadline=$((SECONDS + 90))
  until old_api_ready; do
    is_running "k8s-apiserver-$1" || { tail -n 20 "$(log_file "k8s-apiserver-$1")"; return 1; }
    ((SECONDS < deadline)) || { echo "not ready after 90 s"; return 1; }
    sleep 0.5
  done
  kubectl --server "https://127.0.0.1:$OLD_API_PORT" version
}

V_NEW="$(kube-apiserver --version | awk '{print $2}')"
check "the Prometheus Operator's ServiceMonitor CRD ($PROM_OPERATOR_VERSION) established, $V_NEW" servicemonitor_crd kubectl
for v in "$V_NEW" v1.29.6; do
  kc_args=(kubectl)
  if [[ "$v" != "$V_NEW" ]]; then
    check "API server $v started for the dry-run (kine prefix /registry-$v)" start_old_api "$v" || continue
    kc_args=(kubectl --server "https://127.0.0.1:$OLD_API_PORT")
    check "the Prometheus Operator's ServiceMonitor CRD ($PROM_OPERATOR_VERSION) established, $v" servicemonitor_crd "${kc_args[@]}"
  fi
  for f in helm/values-minimal.yaml helm/values-production.yaml helm/ci/*.yaml; do
    [[ -f "$ROOT/$f" ]] || continue
    check "kubectl apply --dry-run=server, Kubernetes $v [$f]" dry_run "$v" "$f" "${kc_args[@]}"
  done
  [[ "$v" != "$V_NEW" ]] && stop_by_pid "k8s-apiserver-$v" 30 2>/dev/null
done

# --- 7. uninstall leaves nothing behind
leftovers() {
  helm uninstall "$RELEASE" -n "$NS" --wait --timeout "$TIMEOUT" || return 1
  local types="deploy,rs,pods,svc,endpointslices,cm,secret,sa,role,rolebinding,pdb,hpa,networkpolicy,jobs"
  local deadline=$((SECONDS + 60)) left
  while ((SECONDS < deadline)); do
    # What a new namespace has by itself: kube-root-ca.crt, the default ServiceAccount, and the
    # credentials Secrets this test made.
    left="$(kubectl -n "$NS" get "$types" -o name | grep -v -e '^configmap/kube-root-ca.crt$' \
      -e '^serviceaccount/default$' $(awk '{print "-e ^secret/"$1"$"}' "$WORK/secret-keys" | sort -u))"
    [[ -z "$left" ]] && return 0
    sleep 1
  done
  printf 'left behind:\n%s\n' "$left"; return 1
}
check "helm uninstall --wait leaves nothing of the release behind" leftovers

printf '    install took %ss; whole run %ss\n' "$install_s" $((SECONDS - start)) >&2
printf 'test-k8s: %s passed, %s failed\n' "$passed" "$failed"
exit $((failed > 0))
