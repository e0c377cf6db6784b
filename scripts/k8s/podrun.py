#!/usr/bin/env python3
"""Runs one container of a pod spec the way a kubelet would, as a local process (the simulated nodes
run nothing): the environment from `env` and `envFrom` (ConfigMaps and Secrets read from the API
server, `$(VAR)` expanded as the kubelet does), ConfigMap volumes written to a temporary directory,
the image's binary taken from the local build. Then, for a long-running container, its readinessProbe
(httpGet on a named port) is polled until it answers 200; for a Job's container, the exit code counts.

  podrun.py --spec SPEC.json --namespace NS --bin-dir DIR [--container NAME] [--job] [--timeout S]

SPEC.json is a PodSpec (a pod's .spec or a workload's .spec.template.spec). Network: the pod's own
ports cannot be had on a shared host, so each container port is moved to a free port on 127.0.0.1 and
every *_ADDR variable naming it is rewritten (the only deviation from the pod's environment, printed).
The binary: `command[0]` of `/app/<name>` is DIR/<name>; without a command, the image repository's last
path element (eventfold/command-service -> DIR/command-service). Prints what it ran and the probe
result; exits 0 when the container became ready (or the Job's command exited 0).
"""

import argparse
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def kubectl(*args):
    out = subprocess.run(["kubectl", *args], check=True, capture_output=True, text=True)
    return out.stdout


def get(kind, name, ns):
    return json.loads(kubectl("-n", ns, "get", kind, name, "-o", "json"))


def data_of(kind, name, ns, cache={}):
    key = (kind, name)
    if key not in cache:
        obj = get(kind, name, ns)
        d = obj.get("data") or {}
        if kind == "secret":
            d = {k: base64.b64decode(v).decode() for k, v in d.items()}
        cache[key] = d
    return cache[key]


def expand(value, env):
    # Kubernetes $(VAR) expansion: a defined variable is replaced, $$ escapes, others stay as they are.
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", sub, value)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--container")
    ap.add_argument("--job", action="store_true")
    ap.add_argument("--timeout", type=float, default=60)
    a = ap.parse_args()

    spec = json.load(open(a.spec))
    c = next(x for x in spec["containers"] if a.container in (None, x["name"]))
    ns = a.namespace
    env = {}
    for src in c.get("envFrom") or []:
        if "configMapRef" in src:
            env.update(data_of("configmap", src["configMapRef"]["name"], ns))
        if "secretRef" in src:
            env.update(data_of("secret", src["secretRef"]["name"], ns))
    for e in c.get("env") or []:
        if "value" in e:
            env[e["name"]] = expand(e["value"], env)
        elif "valueFrom" in e:
            vf = e["valueFrom"]
            if "secretKeyRef" in vf:
                env[e["name"]] = data_of("secret", vf["secretKeyRef"]["name"], ns)[vf["secretKeyRef"]["key"]]
            elif "configMapKeyRef" in vf:
                env[e["name"]] = data_of("configmap", vf["configMapKeyRef"]["name"], ns)[vf["configMapKeyRef"]["key"]]
            elif "fieldRef" in vf:
                env[e["name"]] = {"metadata.namespace": ns, "status.podIP": "127.0.0.1"}.get(vf["fieldRef"]["fieldPath"], "local")
        else:
            env[e["name"]] = ""

    # ConfigMap volumes: their files in a temporary directory; paths under a mount point are rewritten.
    tmp = tempfile.mkdtemp(prefix="podrun-")
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    mounts = {}
    for m in c.get("volumeMounts") or []:
        v = volumes.get(m["name"], {})
        local = os.path.join(tmp, m["name"])
        os.makedirs(local, exist_ok=True)
        if "configMap" in v:
            for k, val in data_of("configmap", v["configMap"]["name"], ns).items():
                open(os.path.join(local, k), "w").write(val)
        mounts[m["mountPath"].rstrip("/")] = local
    for k, val in list(env.items()):
        for mp, local in mounts.items():
            if val == mp or val.startswith(mp + "/"):
                env[k] = local + val[len(mp):]

    # Ports: each container port on a free local port; *_ADDR variables follow.
    ports = {}
    for p in c.get("ports") or []:
        ports[p.get("name") or str(p["containerPort"])] = (p["containerPort"], free_port())
    notes = []
    for k, val in list(env.items()):
        if k.endswith("_ADDR"):
            for name, (cport, lport) in ports.items():
                if val.endswith(":%d" % cport):
                    env[k] = "127.0.0.1:%d" % lport
                    notes.append("%s=%s (pod: %s)" % (k, env[k], val))

    cmd = list(c.get("command") or []) + list(c.get("args") or [])
    if cmd:
        cmd[0] = os.path.join(a.bin_dir, os.path.basename(cmd[0]))
    else:
        repo = c["image"].split("@")[0].rsplit(":", 1)[0]
        cmd = [os.path.join(a.bin_dir, repo.rsplit("/", 1)[-1])]
    if not os.access(cmd[0], os.X_OK):
        print("podrun: %s is not built (cargo build)" % cmd[0])
        return 1
    full_env = {"PATH": os.environ.get("PATH", ""), "HOME": tmp, **env}
    print("podrun: %s %s" % (c["name"], " ".join(cmd)))
    print("podrun: %d variables from the pod spec; %s" % (len(env), "; ".join(notes) or "no port moved"))
    log = open(os.path.join(tmp, "out.log"), "w")
    proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    deadline = time.time() + a.timeout
    try:
        if a.job:
            try:
                rc = proc.wait(timeout=a.timeout)
            except subprocess.TimeoutExpired:
                print("podrun: the Job's command did not end in %ss" % a.timeout)
                return 1
            print("podrun: exit code %d" % rc)
            return 0 if rc == 0 else 1
        probe = c.get("readinessProbe", {}).get("httpGet")
        if not probe:
            print("podrun: no httpGet readinessProbe")
            return 1
        port = probe["port"]
        lport = ports[port][1] if port in ports else ports[str(port)][1]
        url = "http://127.0.0.1:%d%s" % (lport, probe.get("path", "/"))
        last = ""
        while time.time() < deadline:
            if proc.poll() is not None:
                print("podrun: the process exited with %d before it was ready" % proc.returncode)
                return 1
            try:
                with urllib.request.urlopen(url, timeout=3) as r:
                    if r.status == 200:
                        print("podrun: readinessProbe GET %s (pod: port %s) -> 200" % (url, port))
                        return 0
            except Exception as e:  # 503 until its dependencies answer
                last = str(e)
            time.sleep(0.5)
        print("podrun: not ready after %ss (last: %s)" % (a.timeout, last))
        return 1
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
        tail = open(os.path.join(tmp, "out.log")).read().splitlines()[-15:]
        if tail:
            print("podrun: last lines of its output:")
            print("\n".join("  " + line for line in tail))
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
