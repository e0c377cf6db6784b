#!/usr/bin/env python3
"""Checks the manifests `helm template` rendered from the eventfold chart (standard library only).

    check.py --scenario NAME --rendered RENDERED.json --values VALUES.json [--values MORE.json ...]

RENDERED.json is `helm template ... | yaml2json` (a list of {source, object}); the VALUES files are the
chart's values.yaml and the scenario's values files, as JSON, merged in order the way Helm merges them
(maps deep, everything else replaced), so each check knows what the scenario asked for.

What is checked, for every scenario: ports (http 8080/8082/8083 and admin 9080/9082/9083 for
command-service/outbox-relay/projector, HTTP_ADDR and ADMIN_ADDR to match), probes (/healthz liveness
and startup, /readyz readiness on the admin port), the AUTH_* settings (jwt, issuer, audience, exactly
one JWKS source, its file mounted), pod and container securityContext (runAsNonRoot, readOnlyRootFilesystem, no privilege
escalation, capabilities drop ALL, no service account token), resources, images pinned, the migration
Job's and the schema registration Job's hook annotations and command (the latter registering under the
relay's topic prefix, with the registry's address and credentials), projector HPAs (one per autoscaled read model, 1 <= min <= max <=
kafka.partitions, metric), PodDisruptionBudgets (one per workload, selecting exactly its pods), relay
replicas >= 2, no secret in a ConfigMap and no literal password in env, every secretKeyRef and
$(VAR) reference resolvable, one Deployment per read model with PROJECTOR_READ_MODEL, Service and
selectors, labels, one admin Service per workload (and no admin port on a public Service), the
ServiceMonitor on the admin Services when enabled, NetworkPolicies (on by default; ingress only to the
API and admin ports from the named peers, egress only to DNS and each workload's dependencies), and
under profile production TLS that verifies the server on every connection unless the section says
insecure. Prints one line per failure and a summary; exits 1 when anything failed.
"""
import argparse
import json
import re
import sys

SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|CREDENTIAL|PRIVATE)", re.I)
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:[^@/\s]+@")
VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
HTTP_PORT = {"command-service": 8080, "outbox-relay": 8082, "projector": 8083}
ADMIN_PORT = {"command-service": 9080, "outbox-relay": 9082, "projector": 9083}
# Dependencies each workload may reach (NetworkPolicy egress besides DNS).
USES = {
    "command-service": ("postgresql", "jwks"),
    "outbox-relay": ("postgresql", "kafka", "schemaRegistry", "jwks"),
    "projector": ("postgresql", "kafka", "schemaRegistry", "neo4j", "jwks"),
    "migrations": ("postgresql",),
    "schemas": ("schemaRegistry",),
}
REQUIRED_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                   "app.kubernetes.io/component", "app.kubernetes.io/managed-by")


class Checks:
    def __init__(self, scenario):
        self.scenario = scenario
        self.passed = 0
        self.failures = []

    def ok(self, condition, what):
        """Records one check; `what` names the object and the rule."""
        if condition:
            self.passed += 1
        else:
            self.failures.append(what)
        return bool(condition)


def merge(base, override):
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            if v is None:
                out.pop(k, None)  # Helm deletes a key set to null
            else:
                out[k] = merge(base.get(k), v)
        return out
    return override


def name_of(obj):
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def url_port(url, default):
    """Port of scheme://host:port/..., else 80 for http:// and `default` otherwise."""
    m = re.match(r"^[A-Za-z0-9+.-]+://(?:[^@/]*@)?([^/?#]*)", url)
    host = m[1] if m else ""
    if re.search(r":[0-9]+$", host):
        return int(host.rsplit(":", 1)[1])
    return 80 if url.lower().startswith("http://") else default


def dependency_ports(values):
    """TCP ports of each dependency, as the chart derives them from the addresses in values."""
    kafka = [int(s.strip().rsplit(":", 1)[1]) for s in values["kafka"]["bootstrapServers"].split(",")]
    kafka += values["networkPolicy"].get("kafkaBrokerPorts") or []
    deps = {
        "postgresql": {values["postgresql"]["port"]},
        "kafka": set(kafka),
        "schemaRegistry": {url_port(values["schemaRegistry"]["url"], 443)},
        "neo4j": {url_port(values["neo4j"]["uri"], 7687)},
    }
    if values["auth"].get("jwksUrl"):
        deps["jwks"] = {url_port(values["auth"]["jwksUrl"], 443)}
    return deps


def run(scenario, docs, values, defaults=None):
    c = Checks(scenario)
    objs = [d["object"] for d in docs]
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o.get("kind"), []).append(o)
    deployments = by_kind.get("Deployment", [])
    jobs = by_kind.get("Job", [])
    configmaps = {o["metadata"]["name"]: o for o in by_kind.get("ConfigMap", [])}
    secrets = {o["metadata"]["name"]: o for o in by_kind.get("Secret", [])}
    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    pdbs = by_kind.get("PodDisruptionBudget", [])
    read_models = [rm["name"] for rm in values["projector"]["readModels"]]
    partitions = values["kafka"]["partitions"]

    def component(o):
        return o["metadata"].get("labels", {}).get("app.kubernetes.io/component")

    # --- every object carries the standard labels
    for o in objs:
        labels = o.get("metadata", {}).get("labels", {})
        for label in REQUIRED_LABELS:
            c.ok(label in labels, f"{name_of(o)}: label {label} missing")

    # --- the workloads that must exist
    comps = sorted(component(d) for d in deployments)
    c.ok(comps.count("command-service") == 1, f"one command-service Deployment expected, found {comps}")
    c.ok(comps.count("outbox-relay") == 1, f"one outbox-relay Deployment expected, found {comps}")
    c.ok(comps.count("projector") == len(read_models),
         f"one projector Deployment per read model {read_models} expected, found {comps.count('projector')}")
    mig_jobs = [j for j in jobs if component(j) == "migrations"]
    schema_jobs = [j for j in jobs if component(j) == "schemas"]
    c.ok(len(jobs) == len(mig_jobs) + len(schema_jobs), f"unexpected Jobs {[name_of(j) for j in jobs]}")
    if values["migrations"]["enabled"]:
        c.ok(len(mig_jobs) == 1, f"one migration Job expected, found {len(mig_jobs)}")
    if values["schemas"]["enabled"]:
        c.ok(len(schema_jobs) == 1, f"one schema registration Job expected, found {len(schema_jobs)}")

    # --- pods of Deployments and Jobs: security, resources, images, env
    for w in deployments + jobs:
        n = name_of(w)
        spec = pod_spec(w)
        psc = spec.get("securityContext", {})
        c.ok(spec.get("automountServiceAccountToken") is False, f"{n}: automountServiceAccountToken must be false")
        c.ok(psc.get("runAsNonRoot") is True, f"{n}: pod securityContext.runAsNonRoot must be true")
        c.ok(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{n}: seccompProfile RuntimeDefault expected")
        env_sources = {}  # var name -> defined
        for ctr in spec.get("containers", []) + spec.get("initContainers", []):
            cn = f"{n} container {ctr['name']}"
            sc = ctr.get("securityContext", {})
            c.ok(sc.get("readOnlyRootFilesystem") is True, f"{cn}: readOnlyRootFilesystem must be true")
            c.ok(sc.get("allowPrivilegeEscalation") is False, f"{cn}: allowPrivilegeEscalation must be false")
            c.ok("ALL" in sc.get("capabilities", {}).get("drop", []), f"{cn}: capabilities.drop must contain ALL")
            c.ok(sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{cn}: runAsNonRoot must be true")
            c.ok(not sc.get("privileged"), f"{cn}: must not be privileged")
            res = ctr.get("resources", {})
            c.ok("cpu" in res.get("requests", {}) and "memory" in res.get("requests", {}),
                 f"{cn}: resources.requests.cpu and .memory required")
            c.ok("memory" in res.get("limits", {}), f"{cn}: resources.limits.memory required")
            image = ctr.get("image", "")
            c.ok(("@sha256:" in image) or (re.search(r":[^/:]+$", image) and not image.endswith(":latest")),
                 f"{cn}: image {image!r} must carry a tag (not latest) or a digest")
            c.ok(any(m.get("mountPath") == "/tmp" for m in ctr.get("volumeMounts", [])),
                 f"{cn}: a writable /tmp must be mounted (the root filesystem is read-only)")
            # env: names defined in order; envFrom ConfigMaps first (as the kubelet does)
            defined = set()
            for ef in ctr.get("envFrom", []):
                ref = ef.get("configMapRef", {}).get("name")
                if ref is not None:
                    cm = configmaps.get(ref)
                    if c.ok(cm is not None, f"{cn}: envFrom ConfigMap {ref} is not rendered by the chart"):
                        defined.update(cm.get("data", {}))
            for e in ctr.get("env", []):
                en = e["name"]
                if "value" in e:
                    val = str(e["value"])
                    for ref in VAR_REF.findall(val):
                        c.ok(ref in defined, f"{cn}: env {en} references $({ref}) before it is defined")
                    userinfo = re.search(r"://([^/\s@]*)@", val)
                    if userinfo and ":" in userinfo[1]:
                        c.ok(re.fullmatch(r"\$\([A-Za-z_][A-Za-z0-9_]*\)", userinfo[1].split(":", 1)[1]),
                             f"{cn}: env {en} holds a URL with a literal password")
                    c.ok(not SECRET_NAME.search(en), f"{cn}: env {en} looks like a secret but has a literal value")
                else:
                    skr = e.get("valueFrom", {}).get("secretKeyRef")
                    if skr:
                        check_secret_ref(c, cn, en, skr, secrets, values, w)
                    elif SECRET_NAME.search(en):
                        c.ok(False, f"{cn}: env {en} must come from a secretKeyRef")
                defined.add(en)
            env_sources[ctr["name"]] = defined
            if component(w) != "schemas":
                c.ok("DATABASE_URL" in defined, f"{cn}: DATABASE_URL not set")

    # --- Deployments: probes, port, selectors, config
    pod_labels = {}
    for d in deployments:
        n = name_of(d)
        spec = d["spec"]
        tlabels = spec["template"]["metadata"].get("labels", {})
        pod_labels[d["metadata"]["name"]] = tlabels
        c.ok(matches(spec["selector"]["matchLabels"], tlabels), f"{n}: selector does not match its pod labels")
        ann = spec["template"]["metadata"].get("annotations", {})
        c.ok("checksum/config" in ann and "checksum/credentials" in ann,
             f"{n}: pod template needs checksum/config and checksum/credentials annotations")
        comp = component(d)
        if values["metrics"]["podAnnotations"]:
            c.ok(ann.get("prometheus.io/port") == str(ADMIN_PORT[comp]),
                 f"{n}: prometheus.io/port must name the admin port {ADMIN_PORT[comp]}, found {ann.get('prometheus.io/port')}")
        for ctr in pod_spec(d)["containers"]:
            cn = f"{n} container {ctr['name']}"
            ports = {p.get("name"): p.get("containerPort") for p in ctr.get("ports", [])}
            c.ok(ports == {"http": HTTP_PORT[comp], "admin": ADMIN_PORT[comp]},
                 f"{cn}: container ports http {HTTP_PORT[comp]} and admin {ADMIN_PORT[comp]} expected, found {ports}")
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
                get = ctr.get(probe, {}).get("httpGet", {})
                c.ok(get.get("path") == path and get.get("port") in ("admin", ADMIN_PORT[comp]),
                     f"{cn}: {probe} must GET {path} on the admin port, found {get or 'none'}")
            cm = configmaps.get(next((ef["configMapRef"]["name"] for ef in ctr.get("envFrom", []) if "configMapRef" in ef), ""), {})
            data = cm.get("data", {})
            c.ok(data.get("HTTP_ADDR") == f"0.0.0.0:{HTTP_PORT[comp]}", f"{cn}: HTTP_ADDR must be 0.0.0.0:{HTTP_PORT[comp]} (from its ConfigMap)")
            c.ok(data.get("ADMIN_ADDR") == f"0.0.0.0:{ADMIN_PORT[comp]}", f"{cn}: ADMIN_ADDR must be 0.0.0.0:{ADMIN_PORT[comp]} (from its ConfigMap)")
            check_auth(c, cn, data, ctr, pod_spec(d), configmaps, values)
            if component(d) in ("outbox-relay", "projector"):
                c.ok("KAFKA_BOOTSTRAP_SERVERS" in cm.get("data", {}), f"{cn}: KAFKA_BOOTSTRAP_SERVERS missing")
                sasl = values["kafka"]["securityProtocol"].lower().startswith("sasl_")
                names = {e["name"] for e in ctr.get("env", [])}
                c.ok(("KAFKA_SASL_PASSWORD" in names) == sasl,
                     f"{cn}: KAFKA_SASL_PASSWORD must be set exactly when the protocol is sasl_* ({values['kafka']['securityProtocol']})")

    # --- relay: failover needs two
    for d in deployments:
        if component(d) == "outbox-relay":
            r = d["spec"].get("replicas")
            c.ok(isinstance(r, int) and r >= 2, f"{name_of(d)}: replicas must be >= 2, found {r}")
            c.ok(r == values["relay"]["replicas"], f"{name_of(d)}: replicas {r} != relay.replicas")

    # --- projectors: one per read model, PROJECTOR_READ_MODEL, HPA bounds
    seen_rm = []
    hpa_by_target = {h["spec"]["scaleTargetRef"]["name"]: h for h in hpas}
    for d in deployments:
        if component(d) != "projector":
            continue
        n = name_of(d)
        env = {e["name"]: e.get("value") for e in pod_spec(d)["containers"][0].get("env", [])}
        rm = env.get("PROJECTOR_READ_MODEL")
        c.ok(rm in read_models, f"{n}: PROJECTOR_READ_MODEL={rm!r} is not one of {read_models}")
        seen_rm.append(rm)
        rm_values = next((r for r in values["projector"]["readModels"] if r["name"] == rm), {})
        autoscaling = merge(values["projector"]["autoscaling"], rm_values.get("autoscaling") or {})
        hpa = hpa_by_target.get(d["metadata"]["name"])
        if autoscaling["enabled"]:
            if c.ok(hpa is not None, f"{n}: read model {rm} is autoscaled but has no HPA"):
                hs = hpa["spec"]
                lo, hi = hs.get("minReplicas", 1), hs["maxReplicas"]
                c.ok(1 <= lo <= hi <= partitions,
                     f"HorizontalPodAutoscaler/{hpa['metadata']['name']}: need 1 <= minReplicas ({lo}) <= maxReplicas ({hi}) <= kafka.partitions ({partitions})")
                c.ok((lo, hi) == (autoscaling["minReplicas"], autoscaling["maxReplicas"]),
                     f"HorizontalPodAutoscaler/{hpa['metadata']['name']}: bounds {(lo, hi)} differ from values {(autoscaling['minReplicas'], autoscaling['maxReplicas'])}")
                c.ok(hpa["metadata"].get("annotations", {}).get("eventfold.io/kafka-partitions") == str(partitions),
                     f"HorizontalPodAutoscaler/{hpa['metadata']['name']}: eventfold.io/kafka-partitions annotation should say {partitions}")
                metric = hs["metrics"][0]
                if autoscaling["metric"] == "external":
                    group = rm_values.get("consumerGroup") or f"eventfold-projector-{rm}"
                    sel = metric.get("external", {}).get("metric", {}).get("selector", {}).get("matchLabels", {})
                    c.ok(metric["type"] == "External" and sel.get(autoscaling["external"]["consumerGroupLabel"]) == group,
                         f"HorizontalPodAutoscaler/{hpa['metadata']['name']}: external lag metric selecting consumer group {group} expected, found {metric}")
                else:
                    c.ok(metric["type"] == "Resource" and metric["resource"]["name"] == "cpu",
                         f"HorizontalPodAutoscaler/{hpa['metadata']['name']}: CPU metric expected, found {metric}")
            c.ok("replicas" not in d["spec"], f"{n}: replicas must be left to the HPA")
        else:
            c.ok(hpa is None, f"{n}: read model {rm} has autoscaling off but an HPA")
            c.ok(d["spec"].get("replicas", 1) <= partitions, f"{n}: replicas exceed kafka.partitions ({partitions})")
    c.ok(sorted(seen_rm) == sorted(read_models), f"read models rendered {sorted(seen_rm)} != values {sorted(read_models)}")
    for h in hpas:
        c.ok(h["spec"]["scaleTargetRef"]["name"] in pod_labels,
             f"HorizontalPodAutoscaler/{h['metadata']['name']}: targets a Deployment the chart does not render")

    # --- PDBs: one per workload, selecting exactly its pods
    for d in deployments:
        comp = component(d)
        key = {"command-service": "commandService", "outbox-relay": "relay", "projector": "projector"}[comp]
        if not values[key]["pdb"]["enabled"]:
            continue
        covering = [p for p in pdbs if matches(p["spec"]["selector"]["matchLabels"], pod_labels[d["metadata"]["name"]])]
        c.ok(len(covering) == 1, f"{name_of(d)}: exactly one PodDisruptionBudget must select its pods, found {len(covering)}")
    for p in pdbs:
        s = p["spec"]
        c.ok(("minAvailable" in s) != ("maxUnavailable" in s),
             f"PodDisruptionBudget/{p['metadata']['name']}: exactly one of minAvailable/maxUnavailable")
        others = [dn for dn, lab in pod_labels.items() if matches(s["selector"]["matchLabels"], lab)]
        c.ok(len(others) == 1, f"PodDisruptionBudget/{p['metadata']['name']}: selects {len(others)} Deployments' pods, expected 1")
        if "minAvailable" in s and isinstance(s["minAvailable"], int) and len(others) == 1:
            d = next(x for x in deployments if x["metadata"]["name"] == others[0])
            replicas = d["spec"].get("replicas")
            if replicas is not None:
                c.ok(s["minAvailable"] < replicas,
                     f"PodDisruptionBudget/{p['metadata']['name']}: minAvailable {s['minAvailable']} >= replicas {replicas} blocks every drain")

    # --- hook Jobs: pre-install/pre-upgrade hooks that run the configured command in the
    # command-service image (unless another is configured), with their settings inline
    for j, section in [(j, "migrations") for j in mig_jobs] + [(j, "schemas") for j in schema_jobs]:
        n = name_of(j)
        ann = j["metadata"].get("annotations", {})
        hooks = {h.strip() for h in ann.get("helm.sh/hook", "").split(",")}
        c.ok({"pre-install", "pre-upgrade"} <= hooks, f"{n}: helm.sh/hook must contain pre-install,pre-upgrade, found {ann.get('helm.sh/hook')!r}")
        c.ok("before-hook-creation" in ann.get("helm.sh/hook-delete-policy", ""),
             f"{n}: helm.sh/hook-delete-policy must contain before-hook-creation")
        spec = pod_spec(j)
        c.ok(spec.get("restartPolicy") == "Never", f"{n}: restartPolicy Never expected")
        c.ok(isinstance(j["spec"].get("activeDeadlineSeconds"), int), f"{n}: activeDeadlineSeconds must be set (a hung hook fails the release)")
        ctr = spec["containers"][0]
        c.ok(ctr.get("command") == values[section]["command"], f"{n}: command {ctr.get('command')} != {section}.command")
        if not values[section]["image"].get("repository"):
            cs = next((d for d in deployments if component(d) == "command-service"), None)
            if cs:
                c.ok(ctr["image"] == pod_spec(cs)["containers"][0]["image"], f"{n}: must run the command-service image")
        c.ok(not ctr.get("envFrom"), f"{n}: a pre-install hook cannot use the release's ConfigMaps (they do not exist yet)")

    # --- the schema registration Job registers what the relay looks up: the same registry, the relay's
    # topic prefix, the registry's basic auth when enabled (its own account when schemas.auth is)
    relay_cm = next((cm for cm in configmaps.values() if component(cm) == "outbox-relay"), {}).get("data") or {}
    for j in schema_jobs:
        n = name_of(j)
        env = {e["name"]: e for e in pod_spec(j)["containers"][0].get("env", [])}
        value = lambda k: env.get(k, {}).get("value")
        c.ok(value("EVENTFOLD_TOPIC_PREFIX") == relay_cm.get("KAFKA_TOPIC_PREFIX") == values["kafka"]["topicPrefix"],
             f"{n}: EVENTFOLD_TOPIC_PREFIX {value('EVENTFOLD_TOPIC_PREFIX')!r} must be the relay's KAFKA_TOPIC_PREFIX {relay_cm.get('KAFKA_TOPIC_PREFIX')!r}")
        c.ok(value("SCHEMA_REGISTRY_URL") == relay_cm.get("SCHEMA_REGISTRY_URL") == values["schemaRegistry"]["url"],
             f"{n}: SCHEMA_REGISTRY_URL {value('SCHEMA_REGISTRY_URL')!r} must be the relay's {relay_cm.get('SCHEMA_REGISTRY_URL')!r}")
        c.ok(value("EVENTFOLD_SCHEMAS_DIR"), f"{n}: EVENTFOLD_SCHEMAS_DIR must name the schemas in the image")
        auth = values["schemas"]["auth"] if values["schemas"]["auth"].get("enabled") else values["schemaRegistry"]["auth"]
        if auth.get("enabled"):
            c.ok("SCHEMA_REGISTRY_USERNAME" in env and "secretKeyRef" in env.get("SCHEMA_REGISTRY_PASSWORD", {}).get("valueFrom", {}),
                 f"{n}: the registry needs basic auth, but SCHEMA_REGISTRY_USERNAME/PASSWORD (from a Secret) are not set")
            if "usernameKey" not in auth or not auth.get("usernameKey"):
                c.ok(value("SCHEMA_REGISTRY_USERNAME") == auth.get("username"),
                     f"{n}: SCHEMA_REGISTRY_USERNAME {value('SCHEMA_REGISTRY_USERNAME')!r} != {auth.get('username')!r}")
        else:
            c.ok("SCHEMA_REGISTRY_PASSWORD" not in env, f"{n}: registry auth is not enabled, yet a password is set")

    # --- Services: the public one of command-service (http only) and one admin Service per workload
    services = by_kind.get("Service", [])
    admin_svcs = [s for s in services if s["metadata"].get("labels", {}).get("eventfold.io/plane") == "admin"]
    public_svcs = [s for s in services if s not in admin_svcs]
    for s in public_svcs:
        for p in s["spec"]["ports"]:
            c.ok(p.get("targetPort") not in ("admin", *ADMIN_PORT.values()) and p.get("name") != "admin",
                 f"{name_of(s)}: a public Service exposes the admin port ({p})")
    for dn, lab in pod_labels.items():
        covering = [s for s in admin_svcs if matches(s["spec"]["selector"], lab)]
        c.ok(len(covering) == 1, f"Deployment/{dn}: exactly one admin Service must select its pods, found {len(covering)}")
    for s in admin_svcs:
        selected = [dn for dn, lab in pod_labels.items() if matches(s["spec"]["selector"], lab)]
        c.ok(len(selected) == 1, f"{name_of(s)}: selects the pods of {len(selected)} Deployments, expected 1")
        c.ok(s["spec"].get("type", "ClusterIP") == "ClusterIP", f"{name_of(s)}: an admin Service must be ClusterIP")
        c.ok([(p.get("name"), p.get("targetPort")) for p in s["spec"]["ports"]] == [("admin", "admin")],
             f"{name_of(s)}: must expose only the admin port, found {s['spec']['ports']}")
    api = [s for s in public_svcs if component(s) == "command-service" and s["spec"].get("clusterIP") != "None"]
    if c.ok(len(api) == 1, f"one command-service Service expected, found {len(api)}"):
        s = api[0]
        cs_labels = next((pod_labels[d["metadata"]["name"]] for d in deployments if component(d) == "command-service"), {})
        c.ok(matches(s["spec"]["selector"], cs_labels), f"{name_of(s)}: selector does not match the command-service pods")
        c.ok(any(p.get("targetPort") == "http" for p in s["spec"]["ports"]), f"{name_of(s)}: must target the http port")
    # the read API: one Service per read model selecting exactly that read model's pods, http only
    read_apis = [s for s in public_svcs if component(s) == "projector"]
    projectors = [d for d in deployments if component(d) == "projector"]
    if values["projector"].get("service", {}).get("enabled"):
        c.ok(len(read_apis) == len(projectors),
             f"one read API Service per read model expected ({len(projectors)}), found {len(read_apis)}")
        for s in read_apis:
            selected = [d["metadata"]["name"] for d in projectors
                        if matches(s["spec"]["selector"], pod_labels[d["metadata"]["name"]])]
            c.ok(len(selected) == 1, f"{name_of(s)}: selects the pods of {len(selected)} read models, expected 1")
            c.ok([p.get("targetPort") for p in s["spec"]["ports"]] == ["http"],
                 f"{name_of(s)}: must expose only the http port, found {s['spec']['ports']}")
    else:
        c.ok(not read_apis, f"projector.service.enabled is false, yet {len(read_apis)} read API Services are rendered")

    # --- no secret in a ConfigMap
    passwords = collect_passwords(values)
    for name, cm in configmaps.items():
        for k, v in (cm.get("data") or {}).items():
            c.ok(not SECRET_NAME.search(k), f"ConfigMap/{name}: key {k} looks like a secret")
            c.ok(not URL_WITH_PASSWORD.search(str(v)), f"ConfigMap/{name}: {k} holds a URL with a password")
            for pw in passwords:
                c.ok(pw not in str(v), f"ConfigMap/{name}: {k} contains a configured password")
    # least privilege: the migrator's password is not in the services' Secret
    mig = values["postgresql"]["users"].get(values["migrations"]["databaseUser"], {})
    if mig.get("password"):
        for name, s in secrets.items():
            if "helm.sh/hook" not in s["metadata"].get("annotations", {}):
                c.ok(f"postgresql-{values['migrations']['databaseUser']}-password" not in (s.get("data") or {}),
                     f"Secret/{name}: holds the migrator's password, which only the migration hook needs")
    if values.get("existingSecret"):
        unmanaged = [n for n, s in secrets.items() if "helm.sh/hook" not in s["metadata"].get("annotations", {})]
        c.ok(not unmanaged, f"existingSecret is set, yet the chart renders credential Secrets {unmanaged}")

    # --- optional objects
    sm = by_kind.get("ServiceMonitor", [])
    if values["metrics"]["serviceMonitor"]["enabled"]:
        if c.ok(len(sm) == 1, f"metrics.serviceMonitor.enabled: one ServiceMonitor expected, found {len(sm)}"):
            sel = sm[0]["spec"]["selector"]["matchLabels"]
            ep = sm[0]["spec"]["endpoints"][0]
            c.ok(ep.get("port") == "admin" and ep.get("path") == "/metrics", f"ServiceMonitor: endpoint must scrape admin /metrics, found {ep}")
            metric_svcs = [s for s in services if matches(sel, s["metadata"].get("labels", {}))]
            for dn, lab in pod_labels.items():
                c.ok(any(matches(s["spec"]["selector"], lab) for s in metric_svcs),
                     f"ServiceMonitor: no metrics Service selects the pods of Deployment/{dn}")
    else:
        c.ok(not sm, "metrics.serviceMonitor.enabled is false but a ServiceMonitor is rendered")
    nps = by_kind.get("NetworkPolicy", [])
    if defaults is not None:
        c.ok(defaults["networkPolicy"]["enabled"] is True, "values.yaml: networkPolicy.enabled must be true by default")
    if values["networkPolicy"]["enabled"]:
        workload_labels = dict(pod_labels)
        for j in jobs:
            workload_labels[j["metadata"]["name"]] = j["spec"]["template"]["metadata"].get("labels", {})
        for dn, lab in workload_labels.items():
            covering = [p for p in nps if matches(p["spec"]["podSelector"].get("matchLabels", {}), lab)]
            c.ok(len(covering) == 1, f"networkPolicy.enabled: {dn} must be selected by exactly one NetworkPolicy, found {len(covering)}")
        for p in nps:
            check_network_policy(c, p, component(p), values)
    else:
        c.ok(not nps, "networkPolicy.enabled is false but NetworkPolicies are rendered")

    # --- profile production: TLS that verifies the server, unless the section says insecure
    if values.get("profile") == "production":
        for name, cm in configmaps.items():
            data = cm.get("data") or {}
            if "KAFKA_SECURITY_PROTOCOL" in data and not values["kafka"].get("insecure"):
                c.ok(data["KAFKA_SECURITY_PROTOCOL"] in ("ssl", "sasl_ssl"), f"ConfigMap/{name}: profile production with Kafka {data['KAFKA_SECURITY_PROTOCOL']}")
            if "SCHEMA_REGISTRY_URL" in data and not values["schemaRegistry"].get("insecure"):
                c.ok(data["SCHEMA_REGISTRY_URL"].lower().startswith("https://"), f"ConfigMap/{name}: profile production with registry {data['SCHEMA_REGISTRY_URL']}")
            if "NEO4J_URI" in data and not values["neo4j"].get("insecure"):
                c.ok(re.match(r"(?i)^(bolt|neo4j)\+s://", data["NEO4J_URI"]), f"ConfigMap/{name}: profile production with Neo4j {data['NEO4J_URI']}")
            if "AUTH_JWKS_URL" in data:
                c.ok(data["AUTH_JWKS_URL"].lower().startswith("https://"), f"ConfigMap/{name}: profile production with JWKS {data['AUTH_JWKS_URL']}")
        if not values["postgresql"].get("insecure"):
            for w in deployments + jobs:
                for e in pod_spec(w)["containers"][0].get("env", []):
                    if e["name"] == "DATABASE_URL" and "value" in e:
                        c.ok("sslmode=verify-full" in e["value"], f"{name_of(w)}: profile production with DATABASE_URL {e['value']}")
    return c


def check_auth(c, cn, data, ctr, spec, configmaps, values):
    """AUTH_* from the service's ConfigMap: jwt, issuer, audience, exactly one JWKS source (a file mounted)."""
    c.ok(data.get("AUTH_MODE") == "jwt", f"{cn}: AUTH_MODE must be jwt, found {data.get('AUTH_MODE')!r}")
    for key in ("AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_LEEWAY_SECONDS", "AUTH_SCOPE_CLAIM", "AUTH_TENANT_CLAIM",
                "AUTH_ACTOR_KIND_CLAIM", "AUTH_JWKS_MIN_REFRESH_SECONDS"):
        c.ok(data.get(key), f"{cn}: {key} must be set")
    sources = [k for k in ("AUTH_JWKS_URL", "AUTH_JWKS_FILE") if data.get(k)]
    if not c.ok(len(sources) == 1, f"{cn}: exactly one of AUTH_JWKS_URL and AUTH_JWKS_FILE expected, found {sources}"):
        return
    if sources == ["AUTH_JWKS_FILE"]:
        path = data["AUTH_JWKS_FILE"]
        directory, key = path.rsplit("/", 1)
        mount = next((m for m in ctr.get("volumeMounts", []) if m.get("mountPath") == directory), None)
        if c.ok(mount is not None, f"{cn}: AUTH_JWKS_FILE {path} is not on a mounted volume"):
            vol = next((v for v in spec.get("volumes", []) if v["name"] == mount["name"]), {})
            cm_name = vol.get("configMap", {}).get("name")
            items = {i["key"]: i["path"] for i in vol.get("configMap", {}).get("items", [])}
            c.ok(items.get(key) == key, f"{cn}: the JWKS volume must project key {key}, found {items}")
            existing = values["auth"]["jwks"].get("existingConfigMap")
            if cm_name == existing and existing:
                return
            cm = configmaps.get(cm_name)
            if c.ok(cm is not None, f"{cn}: JWKS ConfigMap {cm_name} is neither rendered nor auth.jwks.existingConfigMap"):
                try:
                    doc = json.loads((cm.get("data") or {}).get(key, ""))
                    c.ok(isinstance(doc.get("keys"), list), f"ConfigMap/{cm_name}: {key} is not a JWKS document")
                except ValueError:
                    c.ok(False, f"ConfigMap/{cm_name}: {key} is not JSON")


def check_network_policy(c, p, comp, values):
    """Ingress only to the API (command-service, the projectors' read API) and admin ports from the named peers; egress only to
    DNS and the workload's dependencies on their ports (plus networkPolicy.extraEgress)."""
    n = name_of(p)
    allowed_from = values["adminPlane"]["allowedFrom"]
    for rule in p["spec"].get("ingress", []):
        ports = [pt.get("port") for pt in rule.get("ports", [])]
        c.ok(ports and "from" in rule and rule["from"],
             f"{n}: every ingress rule must name its ports and peers (an empty list admits everything), found {rule}")
        for port in ports:
            if port == "admin":
                c.ok(comp in ADMIN_PORT and rule.get("from") == allowed_from,
                     f"{n}: the admin port may only be reached from adminPlane.allowedFrom, found {rule.get('from')}")
            else:
                read_api = comp == "projector" and values["projector"].get("service", {}).get("enabled")
                c.ok(port == "http" and (comp == "command-service" or read_api),
                     f"{n}: ingress to port {port} is not allowed")
    if not allowed_from:
        c.ok(not any(pt.get("port") == "admin" for r in p["spec"].get("ingress", []) for pt in r.get("ports", [])),
             f"{n}: adminPlane.allowedFrom is empty, yet the admin port admits peers")
    deps = dependency_ports(values)
    expected = {53}
    for dep in USES.get(comp, ()):
        expected |= deps.get(dep, set())
    extra = values["networkPolicy"].get("extraEgress") or []
    seen = set()
    for rule in p["spec"].get("egress", []):
        if rule in extra:
            continue
        ports = [pt.get("port") for pt in rule.get("ports", [])]
        c.ok(ports, f"{n}: an egress rule without ports admits every port: {rule}")
        seen |= set(ports)
    c.ok(seen == expected, f"{n}: egress ports {sorted(seen)} differ from DNS and the dependencies of {comp} {sorted(expected)}")


def check_secret_ref(c, cn, env_name, ref, secrets, values, workload):
    """A secretKeyRef names a chart Secret holding that key, or a Secret the values say exists."""
    name, key = ref.get("name"), ref.get("key")
    rendered = secrets.get(name)
    if rendered is not None:
        c.ok(key in (rendered.get("data") or {}) or key in (rendered.get("stringData") or {}),
             f"{cn}: env {env_name} reads key {key!r} that Secret/{name} does not have")
        is_hook_secret = "helm.sh/hook" in rendered["metadata"].get("annotations", {})
        is_hook_job = "helm.sh/hook" in workload["metadata"].get("annotations", {})
        if is_hook_job:
            c.ok(is_hook_secret and int(rendered["metadata"]["annotations"].get("helm.sh/hook-weight", "0"))
                 < int(workload["metadata"]["annotations"].get("helm.sh/hook-weight", "0")),
                 f"{cn}: a pre-install hook can only read a Secret that exists before it (an earlier hook or an existing Secret), not Secret/{name}")
        return
    external = set()
    if values.get("existingSecret"):
        external.add(values["existingSecret"])
    for cred in iter_credentials(values):
        if cred.get("existingSecret"):
            external.add(cred["existingSecret"])
    c.ok(name in external, f"{cn}: env {env_name} reads Secret/{name}, which is neither rendered nor named in values")


def iter_credentials(values):
    yield from values["postgresql"]["users"].values()
    yield from (values["kafka"].get("users") or {}).values()
    yield values["schemaRegistry"]["auth"]
    if values.get("schemas", {}).get("auth", {}).get("enabled"):
        yield values["schemas"]["auth"]
    yield values["neo4j"]["auth"]


def collect_passwords(values):
    return sorted({cred["password"] for cred in iter_credentials(values) if cred.get("password")})


def _first(docs, kind, component=None):
    for d in docs:
        o = d["object"]
        if o["kind"] == kind and (component is None or o["metadata"]["labels"].get("app.kubernetes.io/component") == component):
            return o
    raise LookupError(f"no {kind} {component or ''} rendered")


def _public_service(docs):
    return next(x["object"] for x in docs if x["object"]["kind"] == "Service"
                and x["object"]["metadata"]["labels"].get("eventfold.io/plane") != "admin")


def _ctr(o):
    return o["spec"]["template"]["spec"]["containers"][0]


# Broken variants of a good rendering, each with a piece of the failure message that must appear:
# proof that the checks above can fail (run with --self-test).
MUTATIONS = [
    ("liveness probe on the wrong path", lambda d: _ctr(_first(d, "Deployment", "outbox-relay"))["livenessProbe"]["httpGet"].update(path="/"), "livenessProbe must GET /healthz"),
    ("readiness probe missing", lambda d: _ctr(_first(d, "Deployment", "projector")).pop("readinessProbe"), "readinessProbe must GET /readyz"),
    ("writable root filesystem", lambda d: _ctr(_first(d, "Deployment", "command-service"))["securityContext"].update(readOnlyRootFilesystem=False), "readOnlyRootFilesystem must be true"),
    ("capabilities kept", lambda d: _ctr(_first(d, "Job"))["securityContext"]["capabilities"].update(drop=[]), "capabilities.drop must contain ALL"),
    ("root allowed", lambda d: _first(d, "Deployment", "projector")["spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot"), "runAsNonRoot must be true"),
    ("no hook annotation", lambda d: _first(d, "Job")["metadata"]["annotations"].update({"helm.sh/hook": "post-install"}), "helm.sh/hook must contain pre-install,pre-upgrade"),
    ("schema registration not a hook", lambda d: _first(d, "Job", "schemas")["metadata"]["annotations"].update({"helm.sh/hook": "post-install"}), "helm.sh/hook must contain pre-install,pre-upgrade"),
    ("schema registration Job missing", lambda d: d.remove(next(x for x in d if x["object"]["kind"] == "Job" and x["object"]["metadata"]["labels"].get("app.kubernetes.io/component") == "schemas")), "one schema registration Job expected"),
    ("schemas registered under another prefix", lambda d: next(e for e in _ctr(_first(d, "Job", "schemas"))["env"] if e["name"] == "EVENTFOLD_TOPIC_PREFIX").update(value="other."), "must be the relay's KAFKA_TOPIC_PREFIX"),
    ("schema registration without the registry's credentials", lambda d: _ctr(_first(d, "Job", "schemas")).update(env=[e for e in _ctr(_first(d, "Job", "schemas"))["env"] if not e["name"].startswith("SCHEMA_REGISTRY_")]), "SCHEMA_REGISTRY_URL"),
    ("HPA above partitions", lambda d: _first(d, "HorizontalPodAutoscaler")["spec"].update(maxReplicas=99), "<= kafka.partitions"),
    ("HPA min above max", lambda d: _first(d, "HorizontalPodAutoscaler")["spec"].update(minReplicas=9), "minReplicas"),
    ("relay alone", lambda d: _first(d, "Deployment", "outbox-relay")["spec"].update(replicas=1), "replicas must be >= 2"),
    ("PDB missing", lambda d: d.remove(next(x for x in d if x["object"]["kind"] == "PodDisruptionBudget")), "exactly one PodDisruptionBudget"),
    ("password in a ConfigMap", lambda d: _first(d, "ConfigMap")["data"].update(DATABASE_PASSWORD="hunter2"), "looks like a secret"),
    ("credentials URL in a ConfigMap", lambda d: _first(d, "ConfigMap")["data"].update(DATABASE_URL="postgres://u:pw@h/db"), "URL with a password"),
    ("literal password in env", lambda d: _ctr(_first(d, "Deployment", "command-service"))["env"].append({"name": "NEO4J_PASSWORD", "value": "x"}), "has a literal value"),
    ("$(VAR) used before defined", lambda d: _ctr(_first(d, "Deployment", "command-service"))["env"].reverse(), "before it is defined"),
    ("secret key missing", lambda d: next(x["object"] for x in d if x["object"]["kind"] == "Secret" and "helm.sh/hook" not in x["object"]["metadata"].get("annotations", {}))["data"].clear(), "does not have"),
    ("probe on the public port", lambda d: _ctr(_first(d, "Deployment", "command-service"))["livenessProbe"]["httpGet"].update(port="http"), "livenessProbe must GET /healthz on the admin port"),
    ("admin Service missing", lambda d: d.remove(next(x for x in d if x["object"]["kind"] == "Service" and x["object"]["metadata"]["labels"].get("eventfold.io/plane") == "admin")), "exactly one admin Service"),
    ("read API Service over every read model", lambda d: next(x["object"] for x in d if x["object"]["kind"] == "Service" and x["object"]["metadata"]["labels"].get("app.kubernetes.io/component") == "projector" and x["object"]["metadata"]["labels"].get("eventfold.io/plane") != "admin")["spec"]["selector"].pop("eventfold.io/read-model"), "read models, expected 1"),
    ("admin port on the public Service", lambda d: _public_service(d)["spec"]["ports"].append({"name": "admin", "port": 9080, "targetPort": "admin"}), "public Service exposes the admin port"),
    ("auth disabled", lambda d: _first(d, "ConfigMap", "outbox-relay")["data"].update(AUTH_MODE="disabled"), "AUTH_MODE must be jwt"),
    ("two JWKS sources", lambda d: _first(d, "ConfigMap", "projector")["data"].update(AUTH_JWKS_URL="https://x/jwks", AUTH_JWKS_FILE="/etc/eventfold/auth/jwks.json"), "exactly one of AUTH_JWKS_URL and AUTH_JWKS_FILE"),
    ("NetworkPolicy missing", lambda d: d.remove(next(x for x in d if x["object"]["kind"] == "NetworkPolicy")), "selected by exactly one NetworkPolicy"),
    ("admin port open to everyone", lambda d: _first(d, "NetworkPolicy", "outbox-relay")["spec"].update(ingress=[{"ports": [{"protocol": "TCP", "port": "admin"}]}]), "must name its ports and peers"),
    ("egress to any port", lambda d: _first(d, "NetworkPolicy", "command-service")["spec"]["egress"].append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}), "egress rule without ports"),
    ("command-service may reach Kafka", lambda d: _first(d, "NetworkPolicy", "command-service")["spec"]["egress"].append({"ports": [{"protocol": "TCP", "port": 9092}]}), "differ from DNS and the dependencies"),
    ("read model lost", lambda d: d.remove(next(x for x in d if x["object"]["kind"] == "Deployment" and x["object"]["metadata"]["labels"].get("app.kubernetes.io/component") == "projector")), "one projector Deployment per read model"),
]


def self_test(docs, values):
    """Each mutation of a passing rendering must be reported; returns the mutations that were not."""
    import copy
    baseline = run("self-test", docs, values)
    if baseline.failures:
        return ["the unmutated rendering already fails: " + baseline.failures[0]]
    missed = []
    for what, mutate, expected in MUTATIONS:
        broken = copy.deepcopy(docs)
        mutate(broken)
        result = run("self-test", broken, values)
        if not any(expected in f for f in result.failures):
            missed.append(f"{what}: no failure mentioning {expected!r} (got {result.failures[:2]})")
    return missed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--rendered", required=True)
    ap.add_argument("--values", action="append", required=True)
    ap.add_argument("--self-test", action="store_true", help="check that broken variants of the rendering are caught")
    args = ap.parse_args()
    with open(args.rendered) as f:
        docs = json.load(f)
    values = {}
    defaults = None
    for path in args.values:
        with open(path) as f:
            loaded = json.load(f)
        # yaml2json output: a list of documents
        for d in loaded:
            values = merge(values, d["object"])
        if defaults is None:
            defaults = values  # the first file is the chart's values.yaml
    if args.self_test:
        missed = self_test(docs, values)
        for m in missed:
            print(f"  FAIL [self-test] {m}")
        print(f"  checker self-test: {len(MUTATIONS) - len(missed)} of {len(MUTATIONS)} broken renderings caught")
        sys.exit(1 if missed else 0)
    result = run(args.scenario, docs, values, defaults)
    for failure in result.failures:
        print(f"  FAIL [{args.scenario}] {failure}")
    print(f"  rendered-manifest checks [{args.scenario}]: {len(docs)} objects, "
          f"{result.passed} checks passed, {len(result.failures)} failed")
    sys.exit(1 if result.failures else 0)


if __name__ == "__main__":
    main()
