#!/usr/bin/env bash
# A local Kubernetes control plane, no Docker: `make k8s-up` / `make k8s-down` / `make k8s-status`.
#
#   scripts/k8s/cluster.sh up|down|status|env|reset
#
# Processes (each a pid file in $EVENTFOLD_K8S_HOME/run, a log in $EVENTFOLD_K8S_HOME/logs; default
# $EVENTFOLD_K8S_HOME = ${EVENTFOLD_CACHE:-~/.cache/eventfold}/k8s), all on 127.0.0.1:
#   k8s-kine                 kine: the etcd API on the stack's PostgreSQL, database eventfold_k8s  :12379
#   k8s-apiserver            kube-apiserver (RBAC, Node authorizer, default admission plugins)     :16443
#   k8s-controller-manager   kube-controller-manager (every default controller)                    :16257
#   k8s-scheduler            kube-scheduler                                                          :16259
#   k8s-kwok                 kwok: simulated nodes (EVENTFOLD_K8S_NODES, default 3) and pod lifecycles :16247
# The binaries come from scripts/k8s/build.sh (pinned Go modules, built once). Certificates (a CA, the
# API server's serving certificate, client certificates, the service-account key) are made once with
# the openssl CLI in $EVENTFOLD_K8S_HOME/pki. `env` prints `export KUBECONFIG=...` (the cluster admin).
# `reset` stops everything and drops the kine database (an empty cluster on the next `up`).
#
# Why simulated nodes: see docs/helm.md ("The chart on a local control plane"). kwok plays the kubelet:
# it marks nodes Ready (and renews their leases), marks a scheduled pod Running and Ready, a Job's pod
# Succeeded, and removes deleted pods; nothing is run inside a pod.
source "$(dirname "$0")/lib.sh"

STACK="$EVENTFOLD_ROOT/scripts/stack/stack.sh"

need_tools() {
  command -v openssl >/dev/null || die "openssl not found (apt-get install openssl): it makes the cluster's certificates"
  command -v curl >/dev/null || die "curl not found (apt-get install curl)"
  command -v psql >/dev/null || die "psql not found (apt-get install postgresql-client)"
}

# The stack's PostgreSQL URL with kine's database instead of the stack's.
kine_endpoint() {
  local url
  url="$("$STACK" env 2>/dev/null | sed -n 's/^export DATABASE_URL=//p')"
  [[ -n "$url" ]] || die "no DATABASE_URL from scripts/stack/stack.sh env"
  printf '%s/%s?sslmode=disable' "${url%/*}" "$K8S_DATABASE"
}

pg_ready() {
  local url; url="$(kine_endpoint)"
  psql "${url%/*}/postgres" -Atqc 'select 1' >/dev/null 2>&1
}

# --- certificates ------------------------------------------------------------------------------------

# cert NAME SUBJECT [SAN]: a key and a certificate signed by the cluster CA (client auth, or server
# auth when SAN is given), valid 10 years.
cert() {
  local name="$1" subj="$2" san="${3:-}"
  [[ -f "$PKI/$name.crt" ]] && return 0
  local ext="$PKI/$name.ext"
  if [[ -n "$san" ]]; then
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$san" >"$ext"
  else
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >"$ext"
  fi
  openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null || die "openssl: signing $name failed"
  rm -f "$PKI/$name.csr" "$ext"
}

# kubeconfig NAME CERT: a kubeconfig for the client certificate CERT.
kubeconfig() {
  cat >"$K8S_HOME/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: eventfold-local
  cluster: {server: "$K8S_API_URL", certificate-authority: "$PKI/ca.crt"}
users:
- name: $1
  user: {client-certificate: "$PKI/$2.crt", client-key: "$PKI/$2.key"}
contexts:
- name: $1@eventfold-local
  context: {cluster: eventfold-local, user: $1}
current-context: $1@eventfold-local
EOF
}

make_pki() {
  umask 077
  if [[ ! -f "$PKI/ca.crt" ]]; then
    log "making the cluster's certificates in $PKI (openssl)"
    openssl genrsa -out "$PKI/ca.key" 2048 2>/dev/null
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=eventfold-local-ca" -days 3650 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out "$PKI/ca.crt" 2>/dev/null || die "openssl: making the CA failed"
  fi
  cert apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert admin "/O=system:masters/CN=eventfold-admin"
  cert controller-manager "/CN=system:kube-controller-manager"
  cert scheduler "/CN=system:kube-scheduler"
  cert kwok "/O=system:masters/CN=kwok"
  [[ -f "$PKI/sa.key" ]] || {
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  }
  kubeconfig admin admin
  kubeconfig controller-manager controller-manager
  kubeconfig scheduler scheduler
  kubeconfig kwok kwok
}

# kwok's stages: those kwokctl uses by default (node initialize + heartbeat with lease; pod ready,
# complete, delete), taken from the pinned kwok module.
kwok_config() {
  local dir
  dir="$(env GOPATH="$DOWNLOADS/k8s/gopath" GOMODCACHE="$DOWNLOADS/k8s/gopath/pkg/mod" GOFLAGS=-modcacherw \
    GOTOOLCHAIN=local go mod download -json "sigs.k8s.io/kwok@$(cat "$K8S_BIN/.kwok.version")" 2>/dev/null \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$dir/kustomize/stage" ]] || die "kwok's stages not found in the module cache"
  local f out="$K8S_HOME/kwok.yaml"
  : >"$out"
  for f in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
    pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    printf -- '---\n' >>"$out"
    cat "$dir/kustomize/stage/$f.yaml" >>"$out"
  done
  printf '%s' "$out"
}

# --- processes ---------------------------------------------------------------------------------------

https_ok() { curl -fsS -m 2 --cacert "$PKI/ca.crt" "$1" >/dev/null 2>&1 || curl -fksS -m 2 "$1" >/dev/null 2>&1; }
api_ready() { curl -fsS -m 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$K8S_API_URL/readyz" >/dev/null 2>&1; }
kine_ready() { port_in_use "$K8S_KINE_PORT"; }

# daemon NAME TIMEOUT READY_CMD -- CMD...: start CMD unless running, wait for READY_CMD.
daemon() {
  local name="$1" timeout="$2" ready="$3"; shift 4
  if is_running "$name"; then
    log "$name already running (pid $(cat "$(pid_file "$name")"))"
    return 0
  fi
  rm -f "$(pid_file "$name")"
  log "starting $name"
  start_daemon "$name" "$@"
  wait_until "$name" "$timeout" "$ready"
}

cmd_up() {
  need_tools
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl kine kwok; do
    [[ -x "$K8S_BIN/$b" ]] || { log "$b not built yet: scripts/k8s/build.sh (first run 30+ min on 2 cores)"; break; }
  done
  "$K8S_SCRIPTS/build.sh" >/dev/null || die "building the Kubernetes binaries failed (scripts/k8s/build.sh)"
  pg_ready || die "the stack's PostgreSQL does not answer at $(kine_endpoint | sed 's#//[^@]*@#//#; s#/[^/]*$##'): run \`make up\` first"
  make_pki
  local start=$SECONDS
  is_running k8s-kine || require_free_port k8s-kine "$K8S_KINE_PORT" EVENTFOLD_K8S_KINE_PORT
  daemon k8s-kine 60 kine_ready -- "$K8S_BIN/kine" --endpoint "$(kine_endpoint)" \
    --listen-address "127.0.0.1:$K8S_KINE_PORT" --metrics-bind-address 0
  is_running k8s-apiserver || require_free_port k8s-apiserver "$K8S_API_PORT" EVENTFOLD_K8S_API_PORT
  daemon k8s-apiserver 180 api_ready -- "$K8S_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$K8S_KINE_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$K8S_API_PORT" \
    --endpoint-reconciler-type none \
    --service-cluster-ip-range 10.96.0.0/16 \
    --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --authorization-mode Node,RBAC --allow-privileged=false --profiling=false --v 1
  local cm_kc="$K8S_HOME/controller-manager.kubeconfig" sch_kc="$K8S_HOME/scheduler.kubeconfig"
  is_running k8s-controller-manager || require_free_port k8s-controller-manager "$K8S_CM_PORT" EVENTFOLD_K8S_CONTROLLER_MANAGER_PORT
  daemon k8s-controller-manager 120 "cm_ready" -- "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$cm_kc" --authentication-kubeconfig "$cm_kc" --authorization-kubeconfig "$cm_kc" \
    --bind-address 127.0.0.1 --secure-port "$K8S_CM_PORT" --leader-elect=false \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --use-service-account-credentials --cluster-name eventfold-local --profiling=false --v 1
  is_running k8s-scheduler || require_free_port k8s-scheduler "$K8S_SCHEDULER_PORT" EVENTFOLD_K8S_SCHEDULER_PORT
  daemon k8s-scheduler 120 "scheduler_ready" -- "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$sch_kc" --authentication-kubeconfig "$sch_kc" --authorization-kubeconfig "$sch_kc" \
    --bind-address 127.0.0.1 --secure-port "$K8S_SCHEDULER_PORT" --leader-elect=false --profiling=false --v 1
  local kwok_cfg; kwok_cfg="$(kwok_config)"
  # A node lease left by an earlier kwok blocks the new one until it expires (40 s), and kwok plays no
  # pod of a node whose lease it does not hold (it does not catch up on them later): drop stale leases.
  is_running k8s-kwok || kc -n kube-node-lease get lease -o name 2>/dev/null | grep '/kwok-node-' \
    | xargs -r "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" -n kube-node-lease delete >/dev/null 2>&1 || true
  is_running k8s-kwok || require_free_port k8s-kwok "$K8S_KWOK_PORT" EVENTFOLD_K8S_KWOK_PORT
  daemon k8s-kwok 60 "kwok_ready" -- "$K8S_BIN/kwok" --kubeconfig "$K8S_HOME/kwok.kubeconfig" \
    --config "$kwok_cfg" --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --node-ip 127.0.0.1 --cidr 10.244.0.1/16 --node-lease-duration-seconds 40 \
    --server-address "127.0.0.1:$K8S_KWOK_PORT"
  add_nodes
  log "cluster ready in $((SECONDS - start))s: $K8S_API_URL ($("$K8S_BIN/kube-apiserver" --version)); $K8S_NODES simulated nodes"
  log "use it: eval \"\$(scripts/k8s/cluster.sh env)\"; kubectl is $K8S_BIN/kubectl"
}

cm_ready() { https_ok "https://127.0.0.1:$K8S_CM_PORT/healthz"; }
scheduler_ready() { https_ok "https://127.0.0.1:$K8S_SCHEDULER_PORT/healthz"; }
kwok_ready() { curl -fsS -m 2 "http://127.0.0.1:$K8S_KWOK_PORT/healthz" >/dev/null 2>&1; }

# The simulated nodes: Node objects kwok manages (annotation kwok.x-k8s.io/node=fake), each with the
# usual well-known labels, 4 CPUs, 8 GiB and 110 pods; Ready once kwok initialised them.
add_nodes() {
  local i name
  for ((i = 0; i < K8S_NODES; i++)); do
    name="kwok-node-$i"
    kc get node "$name" >/dev/null 2>&1 && continue
    kc apply -f - >/dev/null <<EOF || die "creating node $name failed"
apiVersion: v1
kind: Node
metadata:
  name: $name
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels:
    kubernetes.io/hostname: $name
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
spec: {}
status:
  allocatable: {cpu: "4", memory: 8Gi, pods: "110"}
  capacity: {cpu: "4", memory: 8Gi, pods: "110"}
EOF
  done
  kc wait --for=condition=Ready node -l type=kwok --timeout=60s >/dev/null \
    || die "the simulated nodes did not become Ready (log: $(log_file k8s-kwok))"
  # Ready above may be an earlier run's status: wait until this kwok holds every node's lease.
  local deadline=$((SECONDS + 60)) held
  while :; do
    held="$(kc -n kube-node-lease get lease -o name 2>/dev/null | grep -c '/kwok-node-')"
    ((held >= K8S_NODES)) && break
    ((SECONDS < deadline)) || die "kwok holds $held of $K8S_NODES node leases after 60 s (log: $(log_file k8s-kwok))"
    sleep 0.5
  done
}

cmd_down() {
  local n
  for n in k8s-kwok k8s-scheduler k8s-controller-manager k8s-apiserver k8s-kine; do stop_by_pid "$n" 30; done
}

cmd_status() {
  local n
  for n in k8s-kine k8s-apiserver k8s-controller-manager k8s-scheduler k8s-kwok; do
    if is_running "$n"; then
      printf '  %-24s running (pid %s)\n' "$n" "$(cat "$(pid_file "$n")")"
    else
      printf '  %-24s stopped\n' "$n"
    fi
  done
  if is_running k8s-apiserver; then printf '  %-24s %s  KUBECONFIG=%s\n' api "$K8S_API_URL" "$KUBECONFIG_ADMIN"; fi
}

cmd_reset() {
  cmd_down
  local url; url="$(kine_endpoint)"
  log "dropping database $K8S_DATABASE"
  psql "${url%/*}/postgres" -qc "DROP DATABASE IF EXISTS \"$K8S_DATABASE\"" || die "dropping $K8S_DATABASE failed"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  reset) cmd_reset ;;
  env) printf 'export KUBECONFIG=%s\nexport PATH=%s:$PATH\n' "$KUBECONFIG_ADMIN" "$K8S_BIN" ;;
  *) die "usage: $0 {up|down|status|env|reset}" ;;
esac
