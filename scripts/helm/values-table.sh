#!/usr/bin/env bash
# Regenerates the values table in docs/helm.md from helm/eventfold/values.schema.json and values.yaml
# (check.sh fails when it is out of date). Usage: scripts/helm/values-table.sh [--print]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="$("$HERE/install-tools.sh")"
tmp="$(mktemp)"; trap 'rm -f "$tmp"' EXIT
"$BIN/yaml2json" <"$ROOT/helm/eventfold/values.yaml" >"$tmp"
if [[ "${1:-}" == "--print" ]]; then
  python3 "$HERE/values_table.py" "$ROOT/helm/eventfold/values.schema.json" "$tmp" --print
else
  python3 "$HERE/values_table.py" "$ROOT/helm/eventfold/values.schema.json" "$tmp" --write "$ROOT/docs/helm.md"
  echo "docs/helm.md: values table updated"
fi
