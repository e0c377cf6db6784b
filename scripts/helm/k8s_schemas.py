#!/usr/bin/env python3
"""Turns the Kubernetes JSON schemas shipped in the kubernetes-validate wheel (PyPI) into the layout
kubeconform reads offline: one standalone strict schema per kind.

    k8s_schemas.py WHEEL VERSION OUT_DIR      e.g. ... kubernetes_validate-1.37.0-py3-none-any.whl v1.30.0 out/

The wheel holds `kubernetes-json-schema/v1.NN.0-local-strict/<kind>-<group>-<version>.json` (strict:
additionalProperties false) whose $refs point to `/api/_definitions.json#/$defs/...`, a URL kubeconform
would try to download. Each kind file is written with the definitions it needs (transitively) inlined
under its own `$defs` and the refs made local, under the same file name, which is the name kubeconform's
schema-location template `{{ .ResourceKind }}{{ .KindSuffix }}.json` asks for. Standard library only.
"""
import json
import re
import sys
import zipfile

REMOTE_REF = "/api/_definitions.json#/$defs/"
LOCAL_REF = "#/$defs/"


def refs(node):
    """Yields every definition name referenced under node."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                for prefix in (REMOTE_REF, LOCAL_REF):
                    if value.startswith(prefix):
                        yield value[len(prefix):]
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def localize(node):
    """A copy of node with remote definition refs rewritten to local ones."""
    if isinstance(node, dict):
        return {
            k: (LOCAL_REF + v[len(REMOTE_REF):] if k == "$ref" and isinstance(v, str) and v.startswith(REMOTE_REF)
                else localize(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [localize(item) for item in node]
    return node


def main(wheel, version, out_dir):
    import os

    m = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?", version)
    if not m:
        sys.exit(f"version {version!r}: expected vMAJOR.MINOR.PATCH")
    prefix = f"kubernetes_validate/kubernetes-json-schema/v{m[1]}.{m[2]}.0-local-strict/"
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.startswith(prefix) and n.endswith(".json")]
        if not names:
            sys.exit(f"{wheel} has no schemas for Kubernetes {m[1]}.{m[2]}")
        defs = json.loads(z.read(prefix + "_definitions.json"))["$defs"]
        os.makedirs(out_dir, exist_ok=True)
        written = 0
        for name in names:
            base = name[len(prefix):]
            if base.startswith("_") or base == "all.json":
                continue
            schema = json.loads(z.read(name))
            if "x-kubernetes-group-version-kind" not in schema:
                continue  # a sub-object, never a top-level manifest
            needed, todo = set(), list(refs(schema))
            while todo:
                d = todo.pop()
                if d in needed:
                    continue
                if d not in defs:
                    sys.exit(f"{base}: unknown definition {d}")
                needed.add(d)
                todo.extend(refs(defs[d]))
            schema = localize(schema)
            schema.pop("$id", None)
            if needed:
                schema["$defs"] = {d: defs[d] for d in sorted(needed)}
            with open(os.path.join(out_dir, base), "w") as f:
                json.dump(schema, f, separators=(",", ":"))
            written += 1
    print(f"k8s_schemas: {written} standalone strict schemas for Kubernetes {version} in {out_dir}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
