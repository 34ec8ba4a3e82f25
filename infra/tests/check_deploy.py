#!/usr/bin/env python3
"""Offline checks of deploy/k8s (no cluster, no kubectl/kustomize/helm on this machine).

Parses every manifest, resolves the kustomize overlays (resources + JSON6902 patches) in Python, and checks:

* what each container runs against the castle binary itself: the subcommand exists, every flag in `args`
  and every CASTLE_* variable (or DATABASE_URL) is one that `castle <subcommand> --help` lists (or one the
  subcommand reads outside clap, see SOURCE_ENV, verified in castle/src), every value parses (the values
  are passed to the binary as flags before `--help`: clap rejects an unknown flag or a bad value before it
  prints the help), required flags are given, every container port is bound on all interfaces, and the
  data directory is a mounted volume (the root file system is read-only);
* gateway ids: every gateway replica gets its own CASTLE_GATEWAY_ID at the engine, for every replica count
  up to the ScaledObject's maximum (the ids are expanded from the StatefulSet ordinal);
* scaling: KEDA targets existing workloads of the right kind, never a stream consumer (each replica would
  consume the whole stream again), and only on triggers that measure the workload;
* the contracts with infra/terraform: service accounts = Pod Identity associations, node pools = node group
  labels, ALB target groups = the REST gateway's port and health route.

Exits non-zero listing every violation. `check_deploy.py --self-test` breaks the dev overlay in each of the
ways above and fails unless every breakage is reported.

The binary: $CASTLE_BIN, else ${CARGO_TARGET_DIR:-target}/debug/castle (scripts/test builds it first).
"""
import copy
import functools
import os
import pathlib
import re
import subprocess
import sys

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
TF = REPO / "infra" / "terraform" / "modules" / "environment"
errors = []

WORKLOADS = {"gateway-fix", "gateway-rest", "settlement", "marketdata", "archive"}
# Each follows the whole engine stream: more replicas do not share the work (and would publish or
# write the same things again), so none may be scaled.
STREAM_CONSUMERS = {"settlement", "marketdata", "archive"}
# Gateways hold a session at the engine under their gateway id (requests are deduplicated per id).
GATEWAYS = {"gateway-fix", "gateway-rest"}
# Variables a subcommand reads outside clap (std::env::var), each verified to be read in castle/src.
SOURCE_ENV = {
    "gateway-rest": {"CASTLE_SETTLEMENT_DB", "CASTLE_REST_STORAGE_KEY", "CASTLE_REST_MASTER_KEY"},
}
# Read by libraries for every subcommand: the log filter, the AWS SDK's region.
GENERIC_ENV = {"RUST_LOG", "AWS_REGION"}
# Stand-ins for values Kubernetes fills in at run time.
POD_INDEX_LABEL = "metadata.labels['apps.kubernetes.io/pod-index']"
SECRET_SAMPLE = "postgres://castle@db.invalid:5432/castle?sslmode=require"


def err(msg):
    errors.append(msg)


# ---------------------------------------------------------------------------------------------------------
# kustomize, in Python

def load_kustomization(path):
    kust = yaml.safe_load((path / "kustomization.yaml").read_text())
    docs = []
    for res in kust.get("resources", []):
        target = (path / res).resolve()
        if target.is_dir():
            docs.extend(load_kustomization(target))
        elif target.is_file():
            docs.extend(d for d in yaml.safe_load_all(target.read_text()) if d)
        else:
            err(f"{path}: resource {res} does not exist")
    for patch in kust.get("patches", []):
        sel = patch["target"]
        matches = [d for d in docs if d["kind"] == sel["kind"] and d["metadata"]["name"] == sel["name"]]
        if len(matches) != 1:
            err(f"{path}: patch target {sel} matches {len(matches)} objects")
            continue
        for op in yaml.safe_load(patch["patch"]):
            apply_op(path, matches[0], op)
    return docs


def apply_op(path, doc, op):
    parts = [p for p in op["path"].split("/") if p]
    node = doc
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node.get(p)
        if node is None:
            err(f"{path}: patch path {op['path']} missing in {doc['kind']}/{doc['metadata']['name']}")
            return
    last = parts[-1]
    if op["op"] == "replace":
        exists = (int(last) < len(node)) if isinstance(node, list) else last in node
        if not exists:
            err(f"{path}: replace of missing {op['path']} in {doc['kind']}/{doc['metadata']['name']}")
            return
        node[int(last) if isinstance(node, list) else last] = op["value"]
    else:
        err(f"{path}: patch op {op['op']} not understood by this checker")


# ---------------------------------------------------------------------------------------------------------
# The castle binary's own description of its command line

def castle_bin():
    explicit = os.environ.get("CASTLE_BIN")
    path = pathlib.Path(explicit) if explicit else \
        pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "debug" / "castle"
    if not path.is_file():
        sys.exit(f"check_deploy.py: no castle binary at {path}: build it with `cargo build -p castle` "
                 "(or set CASTLE_BIN)")
    return str(path)


def run_castle(args):
    # A clean environment: nothing from the caller's shell may satisfy or break the check.
    return subprocess.run([castle_bin(), *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})


@functools.lru_cache(maxsize=None)
def subcommands():
    out = run_castle(["--help"]).stdout
    body = out.split("Commands:", 1)[1].split("Options:", 1)[0]
    return {m.group(1) for m in re.finditer(r"^  ([a-z][a-z0-9-]*)\s", body, re.M)}


class Options:
    """The flags of one subcommand as `castle <sub> --help` prints them."""

    def __init__(self, sub):
        r = run_castle([sub, "--help"])
        if r.returncode != 0:
            raise RuntimeError(f"castle {sub} --help failed: {r.stderr}")
        self.flags = {}  # --name -> {"value": bool, "env": str|None}
        current = None
        for line in r.stdout.splitlines():
            m = re.match(r"^\s+(?:-\w, )?--([a-z0-9-]+)( <[^>]+>)?", line)
            if m:
                current = m.group(1)
                self.flags[current] = {"value": bool(m.group(2)), "env": None}
            if current:
                e = re.search(r"\[env: ([A-Z0-9_]+)=", line)
                if e:
                    self.flags[current]["env"] = e.group(1)
        self.by_env = {v["env"]: k for k, v in self.flags.items() if v["env"]}
        usage = next((line for line in r.stdout.splitlines() if line.startswith("Usage:")), "")
        # Required flags are the ones printed outside [OPTIONS] in the usage line.
        self.required = set(re.findall(r"(?<!\[)--([a-z0-9-]+) <", re.sub(r"\[[^\]]*\]", "", usage)))


@functools.lru_cache(maxsize=None)
def options(sub):
    return Options(sub)


@functools.lru_cache(maxsize=None)
def read_in_source(name):
    return any(f'std::env::var("{name}")' in p.read_text() for p in (REPO / "castle" / "src").glob("*.rs"))


# ---------------------------------------------------------------------------------------------------------
# Containers

def expand(value, env):
    """Kubernetes' $(VAR) expansion of env values and args (unknown references stay as they are)."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def container_env(env_name, where, c, configmaps, pod_index):
    """The container's environment: name -> (value, kind), kind = literal | secret | helper."""
    env = {}
    for src in c.get("envFrom", []):
        ref = src.get("configMapRef", {}).get("name")
        if ref is None:
            err(f"{env_name}: {where}: envFrom other than a ConfigMap is not checked: {src}")
            continue
        if ref not in configmaps:
            err(f"{env_name}: {where}: envFrom missing ConfigMap {ref}")
            continue
        for k, v in configmaps[ref].items():
            env[k] = (str(v), "literal")
    plain = {k: v for k, (v, _) in env.items()}
    for e in c.get("env", []):
        name = e["name"]
        if "value" in e:
            env[name] = (expand(str(e["value"]), plain), "literal")
        else:
            vf = e.get("valueFrom", {})
            if "fieldRef" in vf:
                if vf["fieldRef"]["fieldPath"] != POD_INDEX_LABEL:
                    err(f"{env_name}: {where}: env {name} from unchecked field {vf['fieldRef']['fieldPath']}")
                env[name] = (str(pod_index), "helper")
            elif "configMapKeyRef" in vf:
                ref = vf["configMapKeyRef"]
                data = configmaps.get(ref["name"])
                if data is None or ref["key"] not in data:
                    err(f"{env_name}: {where}: env {name} refers to missing {ref['name']}/{ref['key']}")
                    env[name] = ("", "literal")
                else:
                    env[name] = (str(data[ref["key"]]), "literal")
            elif "secretKeyRef" in vf:
                env[name] = (SECRET_SAMPLE, "secret")
            else:
                err(f"{env_name}: {where}: env {name} has no value")
        plain[name] = env[name][0]
    return env


def check_container(env_name, kind, name, spec, c, configmaps, pod_index=0):
    where = f"{kind}/{name}/{c['name']}"
    if c.get("command"):
        err(f"{env_name}: {where}: sets command; the image's entrypoint is castle (use args)")
    args = [str(a) for a in c.get("args", [])]
    if not args:
        err(f"{env_name}: {where}: no castle subcommand in args")
        return
    sub = args[0]
    if sub not in subcommands():
        err(f"{env_name}: {where}: `castle {sub}` is not a subcommand of the binary ({sorted(subcommands())})")
        return
    opts = options(sub)
    env = container_env(env_name, where, c, configmaps, pod_index)
    plain = {k: v for k, (v, _) in env.items()}
    args = [expand(a, plain) for a in args]
    referenced = set(re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                                " ".join(str(e.get("value", "")) for e in c.get("env", [])) + " " +
                                " ".join(str(a) for a in c.get("args", []))))

    given = set()
    for a in args[1:]:
        m = re.match(r"^--([a-z0-9-]+)", a)
        if m:
            if m.group(1) not in opts.flags:
                err(f"{env_name}: {where}: `castle {sub}` has no flag --{m.group(1)}")
            given.add(m.group(1))
    argv = [sub, *args[1:]]
    for var, (value, how) in sorted(env.items()):
        flag = opts.by_env.get(var)
        if flag is None:
            if var in GENERIC_ENV:
                continue
            if var in SOURCE_ENV.get(sub, set()):
                if not read_in_source(var):
                    err(f"{env_name}: {where}: {var} is listed as read by castle {sub}, but castle/src never reads it")
                continue
            if how == "helper" or (var in referenced and not var.startswith("CASTLE_")):
                continue
            err(f"{env_name}: {where}: `castle {sub}` does not read {var}")
            continue
        given.add(flag)
        if flag in {re.match(r"^--([a-z0-9-]+)", a).group(1) for a in args[1:] if a.startswith("--")}:
            continue  # the command line wins over the variable
        if opts.flags[flag]["value"]:
            argv += [f"--{flag}", value]
        elif value.lower() in ("true", "1", "yes", "on"):
            argv.append(f"--{flag}")
    r = run_castle([*argv, "--help"])
    if r.returncode != 0:
        msg = r.stderr.strip().splitlines()[0] if r.stderr.strip() else f"exit {r.returncode}"
        err(f"{env_name}: {where}: castle refuses its configuration: {msg}")
    for req in sorted(opts.required - given):
        err(f"{env_name}: {where}: `castle {sub}` needs --{req} (or its variable)")

    # Every port the container declares must be bound on all interfaces (defaults are loopback).
    values = [v for v, _ in env.values()] + args
    for p in c.get("ports", []):
        port = p["containerPort"]
        if not any(re.fullmatch(rf"(0\.0\.0\.0|\[::\]):{port}", v) for v in values):
            err(f"{env_name}: {where}: nothing binds port {port} ({p.get('name')}) on 0.0.0.0 (castle defaults to loopback)")
    for probe in ("readinessProbe", "livenessProbe"):
        port = c.get(probe, {}).get("httpGet", {}).get("port")
        if port is not None and port not in {p.get("name") for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}:
            err(f"{env_name}: {where}: {probe} on undeclared port {port}")

    # State must land on a mounted volume: the root file system is read-only.
    if "data-dir" in opts.flags:
        data_dir = env.get("CASTLE_DATA_DIR", ("var", ""))[0]
        for i, a in enumerate(args):
            if a == "--data-dir" and i + 1 < len(args):
                data_dir = args[i + 1]
        mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
        if not any(data_dir == m or data_dir.startswith(m.rstrip("/") + "/") for m in mounts):
            err(f"{env_name}: {where}: data directory {data_dir!r} is not on a mounted volume ({mounts})")
        if kind != "StatefulSet":
            err(f"{env_name}: {where}: keeps state in {data_dir} but is not a StatefulSet (state lost on reschedule)")
    return env


# ---------------------------------------------------------------------------------------------------------
# An environment's objects

def terraform_workloads():
    text = (TF / "compute.tf").read_text()
    pairs = set(re.findall(r'service_account = "([^"]+)"\s*\n\s*namespace\s*= "([^"]+)"', text))
    if not pairs:
        err("could not read workload service accounts from modules/environment/compute.tf")
    return {(ns, sa) for sa, ns in pairs}


def check_env(env, docs):
    by_kind = {}
    for d in docs:
        for key in ("apiVersion", "kind", "metadata"):
            if key not in d:
                err(f"{env}: document without {key}: {d}")
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
        if d["kind"] != "Namespace" and d["metadata"].get("namespace") != "castle":
            err(f"{env}: {d['kind']}/{d['metadata']['name']} not in namespace castle")

    workloads = {**by_kind.get("Deployment", {}), **by_kind.get("StatefulSet", {})}
    sas = by_kind.get("ServiceAccount", {})
    services = by_kind.get("Service", {})
    configmaps = {n: cm.get("data", {}) for n, cm in by_kind.get("ConfigMap", {}).items()}
    scaled = by_kind.get("ScaledObject", {})
    if set(workloads) != WORKLOADS:
        err(f"{env}: workloads {sorted(workloads)}, expected {sorted(WORKLOADS)}")

    tf_pairs = terraform_workloads()
    max_replicas = {so["spec"]["scaleTargetRef"]["name"]: so["spec"]["maxReplicaCount"] for so in scaled.values()}
    gateway_ids = {}
    for name, d in workloads.items():
        kind = d["kind"]
        spec = d["spec"]["template"]["spec"]
        sa = spec.get("serviceAccountName")
        if sa not in sas:
            err(f"{env}: {name} uses missing service account {sa}")
        if ("castle", sa) not in tf_pairs:
            err(f"{env}: {name}'s service account castle/{sa} has no Pod Identity association in Terraform")
        if not spec.get("securityContext", {}).get("runAsNonRoot"):
            err(f"{env}: {name} may run as root")
        if kind == "StatefulSet":
            gov = services.get(d["spec"].get("serviceName"))
            if gov is None or gov["spec"].get("clusterIP") != "None":
                err(f"{env}: StatefulSet {name} has no headless governing Service {d['spec'].get('serviceName')}")
            claims = {t["metadata"]["name"] for t in d["spec"].get("volumeClaimTemplates", [])}
            mounted = {m["name"] for c in spec["containers"] for m in c.get("volumeMounts", [])}
            if not claims or not claims <= mounted:
                err(f"{env}: StatefulSet {name} mounts no persistent volume (claims {sorted(claims)})")
        if name in STREAM_CONSUMERS:
            if d["spec"].get("replicas", 1) != 1:
                err(f"{env}: stream consumer {name} runs {d['spec'].get('replicas')} replicas (each would consume the whole stream)")
            if kind == "Deployment" and d["spec"].get("strategy", {}).get("type") != "Recreate":
                err(f"{env}: stream consumer {name} must roll with Recreate (never two at once)")
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            if not (sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False
                    and sc.get("capabilities", {}).get("drop") == ["ALL"]):
                err(f"{env}: {name}/{c['name']} security context not restricted")
            if "memory" not in c.get("resources", {}).get("limits", {}):
                err(f"{env}: {name}/{c['name']} has no memory limit")
            cenv = check_container(env, kind, name, spec, c, configmaps)
            if name in GATEWAYS:
                if kind != "StatefulSet":
                    err(f"{env}: gateway {name} is a {kind}: its replicas cannot have stable gateway ids")
                replicas = max(max_replicas.get(name, 0), d["spec"].get("replicas", 1))
                for i in range(replicas):
                    gid = container_env(env, name, c, configmaps, i).get("CASTLE_GATEWAY_ID", ("", ""))[0]
                    if not gid.isdigit():
                        err(f"{env}: gateway {name} replica {i} has no numeric CASTLE_GATEWAY_ID ({gid!r})")
                        break
                    if int(gid) in gateway_ids:
                        err(f"{env}: gateway id {int(gid)} of {name}-{i} is also {gateway_ids[int(gid)]}'s")
                        break
                    gateway_ids[int(gid)] = f"{name}-{i}"
            del cenv
    if ("keda", "keda-operator") not in tf_pairs:
        err("Terraform gives the KEDA operator (keda/keda-operator) no IAM role")

    for name, svc in services.items():
        if svc["spec"]["selector"]["app.kubernetes.io/name"] not in workloads:
            err(f"{env}: service {name} selects no workload")

    for name, so in scaled.items():
        ref = so["spec"]["scaleTargetRef"]
        target = workloads.get(ref["name"])
        if target is None:
            err(f"{env}: ScaledObject {name} targets missing workload {ref['name']}")
            continue
        if ref.get("kind", "Deployment") != target["kind"]:
            err(f"{env}: ScaledObject {name} targets a {ref.get('kind', 'Deployment')}, {ref['name']} is a {target['kind']}")
        if ref["name"] in STREAM_CONSUMERS:
            err(f"{env}: ScaledObject {name} scales stream consumer {ref['name']} (each replica consumes the whole stream)")
        for t in so["spec"]["triggers"]:
            # Only what the gateways' own load shows: CPU (and memory).
            if t["type"] not in ("cpu", "memory"):
                err(f"{env}: ScaledObject {name} scales on {t['type']}, which does not measure {ref['name']}")
        if so["spec"]["minReplicaCount"] > so["spec"]["maxReplicaCount"]:
            err(f"{env}: {name} minReplicaCount > maxReplicaCount")
    cm = configmaps.get("castle-environment", {})
    if cm.get("environment") != env or cm.get("events-stream") != f"castle-{env}-events":
        err(f"{env}: castle-environment not set for {env}: {cm}")
    return sum(len(v) for v in by_kind.values())


def check_edge_contract():
    """The ALB target groups must point at what the REST gateway serves: its port and its health path."""
    sys.dont_write_bytecode = True  # do not leave __pycache__ in deploy/k8s
    sys.path.insert(0, str(K8S))
    bindings = __import__("render-target-group-bindings").BINDINGS
    lb = (TF.parent / "edge" / "load-balancers.tf").read_text()
    routes = (REPO / "gateway-rest" / "src" / "routes.rs").read_text()
    services = yaml.safe_load_all((K8S / "base" / "services.yaml").read_text())
    ports = {(s["metadata"]["name"], p["port"]) for s in services if s and s.get("kind") == "Service"
             for p in s["spec"]["ports"]}
    for key, (service, port) in bindings.items():
        if (service, port) not in ports:
            err(f"TargetGroupBinding {key} points at {service}:{port}, which no Service exposes")
    for key in ("rest", "ws"):
        m = re.search(r'resource "aws_lb_target_group" "%s" \{(.*?)\n\}' % key, lb, re.S)
        if not m:
            err(f"modules/edge: no aws_lb_target_group.{key}")
            continue
        body = m.group(1)
        port = re.search(r"\n  port\s*=\s*(\d+)", body)
        if not port or int(port.group(1)) != bindings[key][1]:
            err(f"modules/edge: target group {key} port {port and port.group(1)} != binding port {bindings[key][1]}")
        path = re.search(r'path\s*=\s*"([^"]+)"', body)
        if not path or f'.route("{path.group(1)}"' not in routes:
            err(f"modules/edge: target group {key} probes {path and path.group(1)}, which gateway-rest does not route")


# ---------------------------------------------------------------------------------------------------------
# Self-test: each breakage of the dev overlay must be reported.

def _find(docs, kind, name):
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def _container(docs, kind, name):
    return _find(docs, kind, name)["spec"]["template"]["spec"]["containers"][0]


def _set_env(c, name, value):
    c["env"] = [e for e in c.get("env", []) if e["name"] != name] + [{"name": name, "value": value}]


BREAKAGES = {
    "unknown subcommand (gateway-binary)": (
        lambda d: _container(d, "StatefulSet", "gateway-fix").update(args=["gateway-binary"]), "is not a subcommand"),
    "unknown flag": (
        lambda d: _container(d, "StatefulSet", "gateway-rest")["args"].append("--rest-port"), "has no flag --rest-port"),
    "variable the subcommand does not read": (
        lambda d: _set_env(_container(d, "Deployment", "marketdata"), "CASTLE_FIX_LISTEN", "0.0.0.0:1"),
        "does not read CASTLE_FIX_LISTEN"),
    "value the binary refuses": (
        lambda d: _set_env(_container(d, "StatefulSet", "gateway-fix"), "CASTLE_GATEWAY_ID", "gw-$(POD_INDEX)"),
        "refuses its configuration"),
    "listener left on loopback": (
        lambda d: _set_env(_container(d, "StatefulSet", "gateway-fix"), "CASTLE_FIX_LISTEN", "127.0.0.1:9880"),
        "nothing binds port 9880"),
    "data directory on the read-only root": (
        lambda d: _container(d, "StatefulSet", "archive").update(
            env=[e for e in _container(d, "StatefulSet", "archive")["env"] if e["name"] != "CASTLE_DATA_DIR"]),
        "data directory 'var' is not on a mounted volume"),
    "required flag missing": (
        lambda d: _find(d, "ConfigMap", "castle-config")["data"].pop("CASTLE_ENGINE"), "needs --engine"),
    "gateway ids collide": (
        lambda d: _set_env(_container(d, "StatefulSet", "gateway-rest"), "CASTLE_GATEWAY_ID", "10$(POD_INDEX)"),
        "gateway id 100"),
    "gateway as a Deployment": (
        lambda d: _find(d, "StatefulSet", "gateway-rest").update(kind="Deployment"), "stable gateway ids"),
    "stream consumer scaled on Kinesis": (
        lambda d: d.append({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                            "metadata": {"name": "settlement", "namespace": "castle"},
                            "spec": {"scaleTargetRef": {"name": "settlement"}, "minReplicaCount": 1,
                                     "maxReplicaCount": 8,
                                     "triggers": [{"type": "aws-kinesis-stream", "metadata": {}}]}}),
        "scales stream consumer settlement"),
}


def self_test():
    base = load_kustomization(K8S / "overlays" / "dev")
    assert not errors, errors
    check_env("dev", copy.deepcopy(base))
    assert not errors, f"the unbroken dev overlay fails: {errors}"
    failed = 0
    for what, (breakage, expect) in BREAKAGES.items():
        docs = copy.deepcopy(base)
        breakage(docs)
        errors.clear()
        check_env("dev", docs)
        hit = [e for e in errors if expect in e]
        print(f"{'ok  ' if hit else 'FAIL'} {what}: {hit[0] if hit else errors or 'not reported'}")
        failed += not hit
    errors.clear()
    print(f"deploy self-test: {len(BREAKAGES) - failed} of {len(BREAKAGES)} breakages reported")
    sys.exit(1 if failed else 0)


def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
    check_edge_contract()
    total = 0
    for env in ("dev", "test", "prod"):
        n = check_env(env, load_kustomization(K8S / "overlays" / env))
        print(f"{env}: {n} objects")
        total += n
    pools = set(re.findall(r'"castle.io/pool" = "(\w+)"', (TF / "variables.tf").read_text()))
    wanted = set(re.findall(r"values: \[(\w+)\]", (K8S / "base" / "workloads.yaml").read_text()))
    if not wanted <= pools:
        err(f"workloads prefer pools {sorted(wanted)}, Terraform labels {sorted(pools)}")
    for e in errors:
        print("FAIL " + e)
    print(f"deploy manifests: {total} objects, {len(errors)} problems")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
