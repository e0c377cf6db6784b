#!/usr/bin/env bash
# `make images`: prints the docker build commands of the three service images (there is no Docker engine
# on the project's machines). Registry and tag: EVENTFOLD_IMAGE_REGISTRY (default eventfold, i.e. the
# chart's default repositories eventfold/<service>) and EVENTFOLD_IMAGE_TAG (default: the chart's
# appVersion). With --run, runs them with the docker CLI (BuildKit needed for the cache mounts).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
app_version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$ROOT/helm/eventfold/Chart.yaml")"
registry="${EVENTFOLD_IMAGE_REGISTRY:-eventfold}"
tag="${EVENTFOLD_IMAGE_TAG:-$app_version}"
cmds=()
for svc in command-service outbox-relay projector; do
  cmds+=("DOCKER_BUILDKIT=1 docker build --target $svc -t ${registry%/}/$svc:$tag .")
done
if [[ "${1:-}" == "--run" ]]; then
  command -v docker >/dev/null || { echo "docker not found" >&2; exit 1; }
  cd "$ROOT"
  for c in "${cmds[@]}"; do echo "+ $c"; eval "$c"; done
else
  printf '# from the repository root:\n'
  printf '%s\n' "${cmds[@]}"
  printf '# then: docker push %s/<service>:%s, and helm install with --set image.tag=%s\n' "${registry%/}" "$tag" "$tag"
fi
