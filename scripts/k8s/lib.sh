# shellcheck shell=bash
# Shared helpers of the local Kubernetes control plane's scripts (scripts/k8s/*.sh): paths, ports, pid
# files. Sourced, never executed. The stack's helpers (pid handling, readiness waits) come from
# scripts/stack/lib.sh; this file moves the pid files and logs under $EVENTFOLD_K8S_HOME.

# shellcheck source=../stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../stack/lib.sh"

K8S_SCRIPTS="$EVENTFOLD_ROOT/scripts/k8s"
# Everything the cluster keeps: pid files, logs, certificates, kubeconfigs, kwok's stages.
K8S_HOME="${EVENTFOLD_K8S_HOME:-$EVENTFOLD_CACHE/k8s}"
RUN_DIR="$K8S_HOME/run"
LOG_DIR="$K8S_HOME/logs"
PKI="$K8S_HOME/pki"
K8S_BIN="$DOWNLOADS/k8s/bin"
mkdir -p "$RUN_DIR" "$LOG_DIR" "$PKI"

# Ports on 127.0.0.1 (each can be moved by its env var).
K8S_API_PORT="${EVENTFOLD_K8S_API_PORT:-16443}"
K8S_KINE_PORT="${EVENTFOLD_K8S_KINE_PORT:-12379}"
K8S_CM_PORT="${EVENTFOLD_K8S_CONTROLLER_MANAGER_PORT:-16257}"
K8S_SCHEDULER_PORT="${EVENTFOLD_K8S_SCHEDULER_PORT:-16259}"
K8S_KWOK_PORT="${EVENTFOLD_K8S_KWOK_PORT:-16247}"
# kine's PostgreSQL database (on the stack's server; kine creates it when missing).
K8S_DATABASE="${EVENTFOLD_K8S_DATABASE:-eventfold_k8s}"
# Simulated nodes (kwok): how many.
K8S_NODES="${EVENTFOLD_K8S_NODES:-3}"

KUBECONFIG_ADMIN="$K8S_HOME/admin.kubeconfig"
K8S_API_URL="https://127.0.0.1:$K8S_API_PORT"

log() { printf '[k8s] %s\n' "$*" >&2; }
die() { printf '[k8s] error: %s\n' "$*" >&2; exit 1; }

# kc ARGS...: kubectl as the cluster admin.
kc() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
