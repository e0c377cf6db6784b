#!/usr/bin/env bash
# Installs the tools that check the Helm chart without a cluster, only from package registries, and
# prints the directory that holds them (put it first on PATH):
#
#   helm         helm.sh/helm/v3, built with `go install` through the Go module proxy
#   kubeconform  github.com/yannh/kubeconform, built the same way
#   yaml2json    scripts/helm/yaml2json (this repo): turns `helm template` output into JSON for check.py
#   k8s schemas  Kubernetes JSON schemas for kubeconform, taken from the PyPI package kubernetes-validate
#                (it ships the strict schemas of Kubernetes 1.25-1.37) and made standalone by
#                scripts/helm/k8s_schemas.py; kept in $EVENTFOLD_CACHE/downloads/k8s-schemas
#
# Everything is pinned, built once and kept under ${EVENTFOLD_CACHE:-~/.cache/eventfold}/downloads;
# a second run only checks stamp files (well under a second). Output: the bin dir on stdout, progress on
# stderr. Overrides: EVENTFOLD_HELM_VERSION, EVENTFOLD_KUBECONFORM_VERSION, EVENTFOLD_K8S_SCHEMAS_VERSION,
# EVENTFOLD_K8S_VERSIONS (space-separated Kubernetes versions to extract schemas for).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${EVENTFOLD_CACHE:-$HOME/.cache/eventfold}"
TOOLS="$CACHE/downloads/go-tools"
BIN="$TOOLS/bin"
SCHEMAS="$CACHE/downloads/k8s-schemas"

HELM_VERSION="${EVENTFOLD_HELM_VERSION:-v3.21.4}"
HELM_KUBE_MINOR="${EVENTFOLD_HELM_KUBE_MINOR:-36}"                   # k8s.io/client-go v0.36 in helm v3.21.4
KUBECONFORM_VERSION="${EVENTFOLD_KUBECONFORM_VERSION:-v0.8.0}"
K8S_SCHEMAS_VERSION="${EVENTFOLD_K8S_SCHEMAS_VERSION:-1.37.0}"          # kubernetes-validate on PyPI
# sha256 of that wheel (checked after the download; empty when EVENTFOLD_K8S_SCHEMAS_VERSION is overridden)
K8S_SCHEMAS_SHA256="${EVENTFOLD_K8S_SCHEMAS_SHA256-85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9}"
[[ -n "${EVENTFOLD_K8S_SCHEMAS_VERSION:-}" && -z "${EVENTFOLD_K8S_SCHEMAS_SHA256:-}" ]] && K8S_SCHEMAS_SHA256=""
K8S_VERSIONS="${EVENTFOLD_K8S_VERSIONS:-v1.29.0 v1.36.0}"

log() { printf '[helm-tools] %s\n' "$*" >&2; }
die() { printf '[helm-tools] error: %s\n' "$*" >&2; exit 1; }

mkdir -p "$BIN" "$SCHEMAS"

go_env() {
  env GOPATH="$TOOLS/gopath" GOMODCACHE="$TOOLS/gopath/pkg/mod" GOCACHE="$TOOLS/gocache" \
    GOBIN="$BIN" GOTOOLCHAIN=local GOFLAGS="-modcacherw -buildvcs=false" CGO_ENABLED=0 "$@"
}

# Go >= 1.26 is needed (helm v3.21.4's go.mod says go 1.26.0); GOTOOLCHAIN=local, so no toolchain is
# downloaded. Debian 12's golang-go is 1.19, and Debian packages neither helm nor kubeconform (its "helm"
# packages are the Emacs framework), so there is no Debian fallback for these tools.
need_go() {
  command -v go >/dev/null 2>&1 || die "go not found: Go >= 1.26 is needed to build helm and kubeconform"
  local v; v="$(go env GOVERSION 2>/dev/null)"; v="${v#go}"
  local major="${v%%.*}" rest="${v#*.}"; local minor="${rest%%.*}"
  ((major > 1 || (major == 1 && minor >= 26))) || die "go $v is too old: Go >= 1.26 is needed to build helm $HELM_VERSION"
}

stamped() { [[ -x "$BIN/$1" && -f "$BIN/.$1.version" && "$(cat "$BIN/.$1.version")" == "$2" ]]; }
stamp() { printf '%s\n' "$2" >"$BIN/.$1.version"; }

# go_tool NAME MODULE PKG TAG LDFLAGS: `go install PKG@TAG`; when the proxy refuses something that
# `go install` asks for (some modules' version lists answer 403), download the tagged module
# (checksum-verified) and build it with its own go.mod/go.sum, which is what `go install` does too.
go_tool() {
  local name="$1" module="$2" pkg="$3" tag="$4" ldflags="$5"
  stamped "$name" "$tag" && return 0
  need_go
  log "building $name $tag with go install (first run only, 1-3 min)"
  local tmp; tmp="$(mktemp -d)"
  if (cd "$tmp" && go_env go install -trimpath -ldflags "$ldflags" "$pkg@$tag") 2>"$tmp/err"; then
    stamp "$name" "$tag"; rm -rf "$tmp"; return 0
  fi
  log "go install $pkg@$tag failed ($(tail -n 1 "$tmp/err")); trying go mod download + go build"
  local dir
  dir="$(cd "$tmp" && go_env go mod download -json "$module@$tag" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" || true
  if [[ -n "$dir" && -d "$dir" ]] &&
    (cd "$dir" && go_env go build -trimpath -ldflags "$ldflags" -o "$BIN/$name" "./${pkg#"$module"/}"); then
    stamp "$name" "$tag"; rm -rf "$tmp"; return 0
  fi
  rm -rf "$tmp"
  die "cannot build $name $tag from the Go module proxy"
}

# The ldflags are those of helm's own release build: without them `helm version` says v3.x-unreleased
# and the default Kubernetes version of `helm template`/`lint` falls back to v1.20 (the release sets
# it from its k8s.io/client-go, v0.36 for helm v3.21.4).
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
helm_ldflags+=" -X helm.sh/helm/v3/internal/version.metadata= -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for v in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  helm_ldflags+=" -X $v.k8sVersionMajor=1 -X $v.k8sVersionMinor=$HELM_KUBE_MINOR"
done
go_tool helm helm.sh/helm/v3 helm.sh/helm/v3/cmd/helm "$HELM_VERSION" "$helm_ldflags"
go_tool kubeconform github.com/yannh/kubeconform github.com/yannh/kubeconform/cmd/kubeconform \
  "$KUBECONFORM_VERSION" "-s -w -X main.version=$KUBECONFORM_VERSION"

# yaml2json: this repo's own helper; rebuilt when its source changes.
src_sum="$(cat "$HERE/yaml2json/go.mod" "$HERE/yaml2json/go.sum" "$HERE/yaml2json/main.go" | sha256sum | cut -c1-16)"
if ! stamped yaml2json "$src_sum"; then
  need_go
  log "building yaml2json"
  (cd "$HERE/yaml2json" && go_env go build -trimpath -o "$BIN/yaml2json" .) || die "go build yaml2json failed"
  stamp yaml2json "$src_sum"
fi

# Kubernetes JSON schemas: the wheel of kubernetes-validate (PyPI) ships, per Kubernetes version, one strict
# schema per kind whose $refs point into a shared _definitions.json; kubeconform wants one standalone file
# per kind, so k8s_schemas.py inlines the definitions each kind needs.
wheel_dir="$SCHEMAS/kubernetes-validate-$K8S_SCHEMAS_VERSION"
wheel="$wheel_dir/kubernetes_validate-$K8S_SCHEMAS_VERSION-py3-none-any.whl"
if [[ ! -f "$wheel" ]]; then
  command -v python3 >/dev/null 2>&1 || die "python3 not found"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    [[ $(id -u) -eq 0 ]] || die "pip not found (install python3-pip)"
    log "pip not found: installing python3-pip from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null
  fi
  log "downloading kubernetes-validate $K8S_SCHEMAS_VERSION from PyPI (schemas only, ~23 MB)"
  mkdir -p "$wheel_dir"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --disable-pip-version-check \
    -d "$wheel_dir" "kubernetes-validate==$K8S_SCHEMAS_VERSION" >&2 \
    || die "pip download kubernetes-validate==$K8S_SCHEMAS_VERSION failed"
  [[ -f "$wheel" ]] || die "pip download gave no $wheel"
  if [[ -n "$K8S_SCHEMAS_SHA256" ]] && ! sha256sum -c --quiet <<<"$K8S_SCHEMAS_SHA256  $wheel" >&2; then
    rm -f "$wheel"
    die "$wheel does not have the pinned sha256 $K8S_SCHEMAS_SHA256"
  fi
fi
for v in $K8S_VERSIONS; do
  out="$SCHEMAS/$v-standalone-strict"
  [[ -f "$out/.complete-$K8S_SCHEMAS_VERSION" ]] && continue
  log "extracting standalone strict schemas for Kubernetes $v"
  rm -rf "$out"
  python3 "$HERE/k8s_schemas.py" "$wheel" "$v" "$out" >&2 || die "schema extraction for $v failed"
  touch "$out/.complete-$K8S_SCHEMAS_VERSION"
done

printf '%s\n' "$BIN"
