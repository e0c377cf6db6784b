#!/usr/bin/env python3
"""The values table of the eventfold chart, generated from values.schema.json (types, descriptions)
and values.yaml (defaults, as JSON from yaml2json), so the documentation cannot drift from the chart.

    values_table.py SCHEMA VALUES.json --print             print the table
    values_table.py SCHEMA VALUES.json --write DOC.md      replace the table between the markers in DOC.md
    values_table.py SCHEMA VALUES.json --check DOC.md      exit 1 when DOC.md's table is out of date

Markers: <!-- values-table:begin --> and <!-- values-table:end -->. Standard library only.
"""
import json
import sys

BEGIN = "<!-- values-table:begin -->"
END = "<!-- values-table:end -->"
COMPACT = {"probes", "resources", "image", "migrationImage"}  # shown as one row each
MISSING = object()


def resolve(schema, node):
    name = None
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        desc = node.get("description")
        node = dict(schema["definitions"][name])
        if desc:
            node["description"] = desc
    return node, name


def type_of(node, ref):
    if ref in ("intOrPercent",):
        return "int or %"
    if ref == "quantity":
        return "quantity"
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"] if v == v.lower() or v.lower() not in node["enum"])
    if "oneOf" in node:
        return " or ".join(sorted({o.get("type", "?") for o in node["oneOf"]}))
    t = node.get("type", "object" if "properties" in node else "any")
    if isinstance(t, list):
        t = " or ".join(t)
    if t == "array" and isinstance(node.get("items"), dict):
        item, item_ref = resolve(SCHEMA, node["items"])
        t = f"list of {item_ref or item.get('type', 'any')}"
    if t == "object" and isinstance(node.get("additionalProperties"), dict):
        _, vref = resolve(SCHEMA, node["additionalProperties"])
        t = f"map of {vref or 'string'}"
    return t


def fmt_default(value):
    if value is MISSING:
        return ""
    text = json.dumps(value, separators=(", ", ": "))
    if len(text) > 70:
        return "see values.yaml"
    return f"`{text}`".replace("|", "\\|")


def rows(node, path, default, out):
    node, ref = resolve(SCHEMA, node)
    props = node.get("properties")
    leaf = ref in COMPACT or not props or node.get("additionalProperties") is not False
    if leaf:
        desc = node.get("description", "").replace("|", "\\|")
        out.append((path, type_of(node, ref), fmt_default(default), desc))
        add = node.get("additionalProperties")
        if isinstance(add, dict) and ref not in COMPACT:
            item, item_ref = resolve(SCHEMA, add)
            if item.get("properties") and item.get("additionalProperties") is False:
                for k, sub in item["properties"].items():
                    rows(sub, f"{path}.<name>.{k}", MISSING, out)
        items = node.get("items")
        if isinstance(items, dict):
            item, item_ref = resolve(SCHEMA, items)
            if item.get("properties") and item.get("additionalProperties") is False and item_ref not in COMPACT:
                for k, sub in item["properties"].items():
                    rows(sub, f"{path}[].{k}", MISSING, out)
        return
    for k, sub in props.items():
        d = default.get(k, MISSING) if isinstance(default, dict) else MISSING
        rows(sub, f"{path}.{k}" if path else k, d, out)


def table(values):
    out = []
    rows(SCHEMA, "", values, out)
    lines = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    lines += [f"| `{p}` | {t} | {d} | {desc} |" for p, t, d, desc in out]
    return "\n".join(lines) + "\n"


def splice(doc, new_table):
    if BEGIN not in doc or END not in doc:
        sys.exit(f"values_table: markers {BEGIN} / {END} not found")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{new_table}{END}{tail}"


def main():
    global SCHEMA
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        SCHEMA = json.load(f)
    with open(sys.argv[2]) as f:
        values = json.load(f)[0]["object"]
    new_table = table(values)
    mode = sys.argv[3]
    if mode == "--print":
        sys.stdout.write(new_table)
        return
    doc_path = sys.argv[4]
    with open(doc_path) as f:
        doc = f.read()
    updated = splice(doc, new_table)
    if mode == "--write":
        with open(doc_path, "w") as f:
            f.write(updated)
    elif mode == "--check":
        if updated != doc:
            sys.exit(f"{doc_path}: the values table is out of date; run scripts/helm/values-table.sh")
    else:
        sys.exit(__doc__)


SCHEMA = {}
if __name__ == "__main__":
    main()
