#!/usr/bin/env bash
# Checks the Helm chart without a cluster; part of `make test`. Offline once the tools are cached.
#
#   scripts/helm/check.sh
#
#  1. tools: scripts/helm/install-tools.sh (helm, kubeconform, yaml2json, Kubernetes JSON schemas)
#  2. helm lint --strict with helm/values-minimal.yaml (the chart's defaults plus the settings it cannot
#     default: credentials and auth), helm/values-production.yaml and helm/ci/*.yaml
#  3. helm template of each of those for every Kubernetes version in EVENTFOLD_K8S_VERSIONS, piped to
#     kubeconform -strict -summary against the local schemas (the ServiceMonitor CRD is skipped by
#     kubeconform and checked in step 4)
#  4. the rendered manifests, checked by check.py (ports, probes on the admin port, auth settings,
#     admin Services, NetworkPolicies, securityContext, hook annotations, HPA bounds, PDBs, relay
#     replicas, no secrets in ConfigMaps, ...), plus check.py's self-test that broken renderings are caught
#  5. wrong values must be refused, with the expected message: schema (types, minimum, typos, enums)
#     and the template's own rules (auth disabled or incomplete, no password, profile production with
#     a connection without verified TLS, HPA max above the partitions, duplicate read models, ...);
#     each `insecure: true` escape of profile production renders
#  6. docs/helm.md's values table matches values.schema.json and values.yaml
#
# Prints one line per check and "N passed, N failed"; exits 1 when anything failed.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CHART="$ROOT/helm/eventfold"
CACHE="${EVENTFOLD_CACHE:-$HOME/.cache/eventfold}"
SCHEMAS="$CACHE/downloads/k8s-schemas"
K8S_VERSIONS="${EVENTFOLD_K8S_VERSIONS:-v1.29.0 v1.36.0}"   # oldest supported (Chart.yaml kubeVersion) and newest
RELEASE=eventfold
NAMESPACE=eventfold
start=$SECONDS

printf '\n==> helm chart checks (%s)\n' "${CHART#"$ROOT"/}" >&2
BIN="$("$HERE/install-tools.sh")" || { echo "helm chart checks: installing the tools failed" >&2; exit 1; }
export PATH="$BIN:$PATH"
export EVENTFOLD_K8S_VERSIONS="$K8S_VERSIONS"
printf '    %s, kubeconform %s, Kubernetes schemas %s\n' "$(helm version --template '{{.Version}}')" \
  "$(kubeconform -v)" "$K8S_VERSIONS" >&2

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

passed=0
failed=0
failures=()

# check NAME CMD...: run CMD, output to a log; one line ok/FAIL, the log's tail on failure.
check() {
  local name="$1"; shift
  local log="$WORK/log.$((passed + failed))"
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    printf '  ok    %s\n' "$name"
  else
    failed=$((failed + 1))
    failures+=("$name")
    printf '  FAIL  %s\n' "$name"
    tail -n 30 "$log" | sed 's/^/        /'
  fi
}

# Scenarios: name and values files (relative to the repo root).
declare -A SCENARIO_FILES=(
  [minimal]="helm/values-minimal.yaml"
  [production]="helm/values-production.yaml"
)
for f in "$ROOT"/helm/ci/*.yaml; do
  [[ -e "$f" ]] && SCENARIO_FILES["ci-$(basename "$f" .yaml)"]="${f#"$ROOT"/}"
done
scenarios=$(printf '%s\n' "${!SCENARIO_FILES[@]}" | sort)

values_args() {
  local f
  for f in ${SCENARIO_FILES[$1]}; do printf -- '-f\n%s\n' "$ROOT/$f"; done
}

# --- 2. lint
for s in $scenarios; do
  mapfile -t args < <(values_args "$s")
  check "helm lint --strict [$s]" helm lint --strict "$CHART" "${args[@]}"
done

# --- 3. template | kubeconform
kubeconform_render() {  # SCENARIO VERSION
  local out="$WORK/$1-$2.yaml"
  mapfile -t args < <(values_args "$1")
  helm template "$RELEASE" "$CHART" -n "$NAMESPACE" --kube-version "$2" "${args[@]}" >"$out" || return 1
  kubeconform -strict -summary -kubernetes-version "${2#v}" \
    -schema-location "$SCHEMAS/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
    -skip ServiceMonitor "$out"
}
for s in $scenarios; do
  for v in $K8S_VERSIONS; do
    check "helm template | kubeconform -strict, Kubernetes $v [$s]" kubeconform_render "$s" "$v"
  done
done

# --- 4. rendered manifests
yaml2json <"$CHART/values.yaml" >"$WORK/values.json"
newest="${K8S_VERSIONS##* }"
manifest_checks() {  # SCENARIO [--self-test]
  local s="$1"; shift
  local render="$WORK/$s-$newest.yaml" vals=(--values "$WORK/values.json") f i=0
  [[ -s "$render" ]] || return 1
  yaml2json <"$render" >"$WORK/$s.json" || return 1
  for f in ${SCENARIO_FILES[$s]}; do
    yaml2json <"$ROOT/$f" >"$WORK/$s-values-$i.json" || return 1
    vals+=(--values "$WORK/$s-values-$i.json"); i=$((i + 1))
  done
  python3 "$HERE/check.py" --scenario "$s" --rendered "$WORK/$s.json" "${vals[@]}" "$@"
}
for s in $scenarios; do
  check "rendered manifests: probes, securityContext, hooks, HPA bounds, PDBs, secrets [$s]" manifest_checks "$s"
done
check "rendered-manifest checker catches broken manifests (self-test)" manifest_checks ci-dev-secrets-values --self-test

# --- 5. wrong values are refused with a clear message
# reject NAME PATTERN ARGS...: `helm template ARGS` must fail and its error match PATTERN (grep -E).
reject() {
  local pattern="$1"; shift
  local out rc
  out="$(helm template "$RELEASE" "$CHART" -n "$NAMESPACE" "$@" 2>&1 >/dev/null)"; rc=$?
  printf 'exit %s\n%s\n' "$rc" "$out"
  ((rc != 0)) || { echo "expected a failure, got exit 0"; return 1; }
  grep -qE -- "$pattern" <<<"$out" || { echo "error does not match: $pattern"; return 1; }
}
values_file() {  # NAME CONTENT: a values file in $WORK
  printf '%s\n' "$2" >"$WORK/$1.yaml"
  printf '%s' "$WORK/$1.yaml"
}
# accept PATTERN ARGS...: `helm template ARGS` must succeed and its output match PATTERN (grep -E).
accept() {
  local pattern="$1"; shift
  local out
  out="$(helm template "$RELEASE" "$CHART" -n "$NAMESPACE" "$@" 2>&1)" || { printf '%s\n' "$out" | tail -n 5; return 1; }
  grep -qE -- "$pattern" <<<"$out" || { echo "output does not match: $pattern"; return 1; }
}
# absent PATTERN ARGS...: `helm template ARGS` must succeed and its output not match PATTERN.
absent() {
  local pattern="$1"; shift
  local out
  out="$(helm template "$RELEASE" "$CHART" -n "$NAMESPACE" "$@" 2>&1)" || { printf '%s\n' "$out" | tail -n 5; return 1; }
  ! grep -qE -- "$pattern" <<<"$out" || { echo "output matches: $pattern"; return 1; }
}
MIN=(-f "$ROOT/helm/values-minimal.yaml")
PROD=(-f "$ROOT/helm/values-production.yaml")
DEV=(-f "$ROOT/helm/ci/dev-secrets-values.yaml")
check 'refused: relay.replicas "two" (type)' \
  reject "at '/relay/replicas': got string, want integer" --set relay.replicas=two
# auth: always on, complete
check 'refused: the bare chart (no auth settings, no credentials)' \
  reject 'auth.issuer is required with auth.mode jwt'
check 'refused: auth.mode disabled' \
  reject 'auth.mode "disabled" is refused: every service, its admin API included, would accept requests without a token' \
  "${MIN[@]}" --set auth.mode=disabled
check 'refused: auth.mode disabled under profile production' \
  reject 'auth.mode "disabled" is refused' "${PROD[@]}" --set auth.mode=disabled
check 'refused: unknown auth.mode' \
  reject "at '/auth/mode': value must be one of" "${MIN[@]}" --set auth.mode=none
check 'refused: jwt without an issuer' \
  reject 'auth.issuer is required with auth.mode jwt' "${MIN[@]}" --set auth.issuer=
check 'refused: jwt without an audience' \
  reject 'auth.audience is required with auth.mode jwt' "${MIN[@]}" --set auth.audience=
check 'refused: jwt without a JWKS' \
  reject 'exactly one JWKS source is required .*found 0' "${MIN[@]}" --set auth.jwksUrl=
check 'refused: two JWKS sources (URL and ConfigMap)' \
  reject 'exactly one JWKS source is required .*found 2: auth.jwksUrl, auth.jwks.existingConfigMap' \
  "${MIN[@]}" --set auth.jwks.existingConfigMap=idp-jwks
check 'refused: an inline JWKS that is no JWKS document' \
  reject 'auth.jwks.inline must be a JWKS document' "${MIN[@]}" --set auth.jwksUrl= \
  -f "$(values_file jwks-bad 'auth: {jwks: {inline: "{\"kid\": \"x\"}"}}')"
check 'accepted: the JWKS from an existing ConfigMap, mounted as AUTH_JWKS_FILE' \
  accept 'name: idp-jwks' "${MIN[@]}" --set auth.jwksUrl= --set auth.jwks.existingConfigMap=idp-jwks
# no default passwords
check 'refused: a chart-managed credential without a password (no default passwords)' \
  reject 'neo4j.auth has no password and no Secret: set existingSecret \(or neo4j.auth.existingSecret\)' \
  "${MIN[@]}" --set existingSecret=
check 'refused: one PostgreSQL user without a password' \
  reject 'postgresql.users.commandService has no password and no Secret' \
  "${DEV[@]}" --set postgresql.users.commandService.password=
# profile production: TLS that verifies the server, unless the section says insecure
check 'refused: profile production with plaintext Kafka' \
  reject 'profile production: kafka.securityProtocol "plaintext" does not encrypt' "${PROD[@]}" --set kafka.securityProtocol=plaintext
check 'refused: profile production with sasl_plaintext Kafka' \
  reject 'profile production: kafka.securityProtocol "sasl_plaintext" does not encrypt' "${PROD[@]}" --set kafka.securityProtocol=sasl_plaintext
check 'refused: profile production with postgresql.sslMode require' \
  reject 'profile production: postgresql.sslMode "require" does not verify' "${PROD[@]}" --set postgresql.sslMode=require
check 'refused: profile production with an http:// schema registry' \
  reject 'profile production: schemaRegistry.url "http://schema-registry.kafka.svc:8081" is not https' \
  "${PROD[@]}" --set schemaRegistry.url=http://schema-registry.kafka.svc:8081
check 'refused: profile production with a bolt:// Neo4j URI' \
  reject 'profile production: neo4j.uri "bolt://neo4j.graph.svc:7687" has no verified TLS' "${PROD[@]}" --set neo4j.uri=bolt://neo4j.graph.svc:7687
check 'refused: profile production with a neo4j+ssc:// URI (certificate not verified)' \
  reject 'profile production: neo4j.uri "neo4j\+ssc://neo4j.graph.svc:7687" has no verified TLS' "${PROD[@]}" --set neo4j.uri=neo4j+ssc://neo4j.graph.svc:7687
check 'refused: profile production with an http:// JWKS URL' \
  reject 'profile production: auth.jwksUrl "http://idp/jwks" is not https' "${PROD[@]}" --set auth.jwksUrl=http://idp/jwks
check 'accepted: profile production, plaintext Kafka with kafka.insecure' \
  accept 'KAFKA_SECURITY_PROTOCOL: "plaintext"' "${PROD[@]}" --set kafka.securityProtocol=plaintext --set kafka.insecure=true
check 'accepted: profile production, sslMode require with postgresql.insecure' \
  accept 'sslmode=require' "${PROD[@]}" --set postgresql.sslMode=require --set postgresql.insecure=true
check 'accepted: profile production, http:// registry with schemaRegistry.insecure' \
  accept 'SCHEMA_REGISTRY_URL: "http://schema-registry.kafka.svc:8081"' "${PROD[@]}" \
  --set schemaRegistry.url=http://schema-registry.kafka.svc:8081 --set schemaRegistry.insecure=true
check 'accepted: profile production, bolt:// with neo4j.insecure' \
  accept 'NEO4J_URI: "bolt://neo4j.graph.svc:7687"' "${PROD[@]}" --set neo4j.uri=bolt://neo4j.graph.svc:7687 --set neo4j.insecure=true
check 'accepted: profile development, plaintext everywhere (values-minimal)' \
  accept 'sslmode=prefer' "${MIN[@]}"
# the schema registration hook: before the services, under their topic prefix, with a registering account
check 'accepted: the schema registration hook registers under kafka.topicPrefix' \
  accept '^              value: "acme\.tenant1\."$' "${MIN[@]}" --set kafka.topicPrefix=acme.tenant1.
check 'accepted: the schema registration hook uses schemas.auth when enabled, from its Secret' \
  accept 'key: schema-registry-schemas-password' "${DEV[@]}" --set schemas.auth.enabled=true \
  --set schemas.auth.password=registrar
check 'refused: schemas.auth enabled without a password' \
  reject 'schemas.auth has no password and no Secret' "${DEV[@]}" --set schemas.auth.enabled=true
check 'accepted: schemas.enabled false renders no schema registration hook' \
  absent 'name: eventfold-schemas' "${MIN[@]}" --set schemas.enabled=false
check 'refused: relay.replicas 1 (failover needs 2)' \
  reject "at '/relay/replicas': minimum: got 1, want 2" --set relay.replicas=1
check 'refused: projector HPA maxReplicas above kafka.partitions' \
  reject 'read model "graph": autoscaling.maxReplicas \(4\) exceeds kafka.partitions \(3\)'  "${MIN[@]}" --set kafka.partitions=3
check 'refused: one read model HPA maxReplicas above kafka.partitions' \
  reject 'read model "tables": autoscaling.maxReplicas \(13\) exceeds kafka.partitions \(12\)' \
  "${MIN[@]}" -f "$(values_file rm-hpa 'projector: {readModels: [{name: graph}, {name: tables, autoscaling: {maxReplicas: 13}}]}')"
check 'refused: read model replicas above kafka.partitions (autoscaling off)' \
  reject 'read model "graph": replicas \(13\) exceeds kafka.partitions \(12\)' \
  "${MIN[@]}" -f "$(values_file rm-replicas 'projector: {readModels: [{name: graph, replicas: 13, autoscaling: {enabled: false}}]}')"
check 'refused: HPA minReplicas above maxReplicas' \
  reject 'minReplicas \(5\) exceeds autoscaling.maxReplicas \(4\)'  "${MIN[@]}" --set projector.autoscaling.minReplicas=5
check 'refused: a typo in a key (commandService.replica)' \
  reject "at '/commandService': additional properties 'replica' not allowed" --set commandService.replica=3
check 'refused: a typo at the top level (kafak)' \
  reject "additional properties 'kafak' not allowed" --set kafak.partitions=3
check 'refused: unknown kafka.securityProtocol' \
  reject "at '/kafka/securityProtocol': value must be one of" --set kafka.securityProtocol=SASL_TLS
check 'refused: read model name that is not a DNS label' \
  reject "at '/projector/readModels/0/name'.*does not match pattern" \
  -f "$(values_file rm-name 'projector: {readModels: [{name: Graph_1}]}')"
check 'refused: the same read model twice' \
  reject 'read model "graph" is listed twice' \
  "${MIN[@]}" -f "$(values_file rm-dup 'projector: {readModels: [{name: graph}, {name: graph}]}')"
check 'refused: databaseUser naming no postgresql.users entry' \
  reject 'commandService.databaseUser: "nobody" is not a key of postgresql.users'  "${MIN[@]}" --set commandService.databaseUser=nobody
check 'refused: urlKey without an existing Secret' \
  reject 'postgresql.users.commandService.urlKey is set but no existingSecret holds it' \
  "${DEV[@]}" --set postgresql.users.commandService.urlKey=uri
check 'refused: a writable root filesystem' \
  reject "at '/containerSecurityContext/readOnlyRootFilesystem': value must be true" \
  --set containerSecurityContext.readOnlyRootFilesystem=false
check 'refused: a Kafka bootstrap server without a port' \
  reject "at '/kafka/bootstrapServers'.*does not match pattern" --set kafka.bootstrapServers=kafka
check 'refused: a negative port' \
  reject "at '/postgresql/port': minimum" --set postgresql.port=-1

# --- 6. docs
if [[ -f "$ROOT/docs/helm.md" ]]; then
  check "docs/helm.md values table matches values.schema.json + values.yaml" \
    python3 "$HERE/values_table.py" "$CHART/values.schema.json" "$WORK/values.json" --check "$ROOT/docs/helm.md"
fi

printf '\nhelm chart checks took %ss\n' "$((SECONDS - start))"
if ((failed)); then
  printf 'failed:\n'; printf '  - %s\n' "${failures[@]}"
fi
printf 'helm: %s passed, %s failed\n' "$passed" "$failed"
((failed == 0))
