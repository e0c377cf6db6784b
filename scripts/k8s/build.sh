#!/usr/bin/env bash
# Builds the local Kubernetes control plane's binaries once, from pinned Go modules served by the Go
# module proxy (no Docker, no release tarballs), and prints the directory that holds them:
#
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl   k8s.io/kubernetes  (KUBE_VERSION)
#   kube-apiserver-v1.29.6   k8s.io/kubernetes v1.29.6 (scripts/k8s/kube-1.29, build tag providerless): the
#            oldest minor the chart claims (Chart.yaml kubeVersion), only for test-k8s's server-side dry-run
#   kine     github.com/k3s-io/kine    (KINE_VERSION): the etcd API on PostgreSQL, the API server's store
#   kwok     sigs.k8s.io/kwok          (KWOK_VERSION): simulated nodes and pod lifecycles (no kubelet here)
#
#   scripts/k8s/build.sh [--time]    # --time: print each binary's build time (seconds) on stderr
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces the k8s.io/* staging modules with
# ./staging/src/..., which its module zip lacks (nested modules are left out). scripts/k8s/kube is a
# small module of ours that requires k8s.io/kubernetes and replaces each staging module with its
# published release of the same minor (v0.36.3 for v1.36.3); its go.sum pins every checksum, and the
# four commands are built from it. kine and kwok have no replace directives: as scripts/stack/registry.sh
# does, the tagged module is downloaded (checksum-verified) and built with its own go.mod/go.sum.
# Changing KUBE_VERSION means changing scripts/k8s/kube/go.mod (and `go mod tidy`). The version ldflags are those of
# Kubernetes' own build (hack/lib/version.sh): without them the API server reports v0.0.0-master and
# Helm's kubeVersion check refuses the chart.
#
# Binaries: $EVENTFOLD_CACHE/downloads/k8s/bin (a stamp file per binary names its version; a second run
# only checks the stamps). Go caches: $EVENTFOLD_CACHE/downloads/k8s/{gopath,gocache}; the build cache
# (about 5 GB) is removed after a build (EVENTFOLD_K8S_KEEP_GOCACHE=1 keeps it).
# Builds run one package at a time (EVENTFOLD_K8S_BUILD_JOBS, default 1): the machine has 2 cores.
set -euo pipefail

CACHE="${EVENTFOLD_CACHE:-$HOME/.cache/eventfold}"
ROOT="$CACHE/downloads/k8s"
BIN="$ROOT/bin"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KUBE_VERSION="v1.36.3"   # must match scripts/k8s/kube/go.mod
KINE_VERSION="${EVENTFOLD_KINE_VERSION:-v0.17.5}"
KWOK_VERSION="${EVENTFOLD_KWOK_VERSION:-v0.8.0}"
JOBS="${EVENTFOLD_K8S_BUILD_JOBS:-1}"
TIME=0
BUILT=0
[[ "${1:-}" == --time ]] && TIME=1

log() { printf '[k8s-build] %s\n' "$*" >&2; }
die() { printf '[k8s-build] error: %s\n' "$*" >&2; exit 1; }

mkdir -p "$BIN"

go_env() {
  env GOPATH="$ROOT/gopath" GOMODCACHE="$ROOT/gopath/pkg/mod" GOCACHE="$ROOT/gocache" GOTOOLCHAIN=local \
    GOWORK=off GOFLAGS="-modcacherw -buildvcs=false -mod=readonly" CGO_ENABLED=0 "$@"
}

need_go() {
  command -v go >/dev/null 2>&1 || die "go not found: Go >= 1.26 is needed to build Kubernetes $KUBE_VERSION"
  local v; v="$(go env GOVERSION 2>/dev/null)"; v="${v#go}"
  local major="${v%%.*}" rest="${v#*.}"; local minor="${rest%%.*}"
  ((major > 1 || (major == 1 && minor >= 26))) || die "go $v is too old: Go >= 1.26 is needed to build Kubernetes $KUBE_VERSION"
}

stamped() { [[ -x "$BIN/$1" && -f "$BIN/.$1.version" && "$(cat "$BIN/.$1.version")" == "$2" ]]; }

# module_dir MODULE VERSION: download the module (once) and print its directory.
module_dir() {
  local dir
  dir="$(cd "$ROOT" && go_env go mod download -json "$1@$2" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" \
    || die "go mod download $1@$2 failed"
  [[ -n "$dir" && -d "$dir" ]] || die "go mod download $1@$2 gave no module directory"
  printf '%s' "$dir"
}

# build NAME MODULE VERSION PKG LDFLAGS [TAGS]: build PKG inside MODULE@VERSION, or, when MODULE is a
# directory, inside that directory (our own module).
build() {
  local name="$1" module="$2" version="$3" pkg="$4" ldflags="$5" tags="${6:-}"
  stamped "$name" "$version" && return 0
  need_go
  log "building $name $version (first run only; -p $JOBS)"
  local dir start=$SECONDS
  if [[ -d "$module" ]]; then dir="$module"; else dir="$(module_dir "$module" "$version")"; fi
  (cd "$dir" && go_env go build -p "$JOBS" -tags "$tags" -trimpath -ldflags "$ldflags" -o "$BIN/$name.tmp" "$pkg") \
    || { rm -f "$BIN/$name.tmp"; die "go build of $name ($module@$version) failed"; }
  mv "$BIN/$name.tmp" "$BIN/$name"
  printf '%s\n' "$version" >"$BIN/.$name.version"
  BUILT=1
  ((TIME)) && printf '[k8s-build] %s built in %ss\n' "$name" $((SECONDS - start)) >&2
  return 0
}

kube_ldflags() {  # VERSION
  local minor="${1#v1.}"; minor="${minor%%.*}"
  local out="-s -w" key val pkg
  for kv in "gitVersion=$1" "gitMajor=1" "gitMinor=$minor" "gitTreeState=clean" \
    "buildDate=1970-01-01T00:00:00Z"; do
    key="${kv%%=*}"; val="${kv#*=}"
    for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do out+=" -X $pkg.$key=$val"; done
  done
  printf '%s' "$out"
}

KL="$(kube_ldflags "$KUBE_VERSION")"
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  build "$cmd" "$HERE/kube" "$KUBE_VERSION" "k8s.io/kubernetes/cmd/$cmd" "$KL"
done
# The 1.29 module's go.mod was made with `go mod tidy -e`: its tests import k8s.io/legacy-cloud-providers,
# which the proxy does not serve at v0.29.6; the providerless build imports none of it.
build kube-apiserver-v1.29.6 "$HERE/kube-1.29" v1.29.6 k8s.io/kubernetes/cmd/kube-apiserver \
  "$(kube_ldflags v1.29.6)" providerless
build kine github.com/k3s-io/kine "$KINE_VERSION" . "-s -w -X github.com/k3s-io/kine/pkg/version.Version=$KINE_VERSION"
build kwok sigs.k8s.io/kwok "$KWOK_VERSION" ./cmd/kwok "-s -w"
# The Go build cache of these builds is about 5 GB and serves no later run (the binaries are stamped; a
# version bump recompiles nearly everything): drop it unless EVENTFOLD_K8S_KEEP_GOCACHE=1.
if ((BUILT)) && [[ "${EVENTFOLD_K8S_KEEP_GOCACHE:-0}" != 1 ]]; then rm -rf "$ROOT/gocache"; fi
printf '%s\n' "$BIN"
