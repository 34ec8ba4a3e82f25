#!/usr/bin/env python3
"""Offline structural checks of deploy/k8s (no cluster, no kubectl/kustomize/helm on this machine).

Parses every manifest, resolves the kustomize overlays (resources + JSON6902 patches) in Python, and checks
the contracts with infra/terraform: service accounts = Pod Identity associations, KEDA Kinesis triggers =
the environment's stream name, node pools = node group labels, ALB target groups = the REST gateway's port
and health route. Exits non-zero listing every violation.
"""
import pathlib
import re
import sys

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
TF = REPO / "infra" / "terraform" / "modules" / "environment"
errors = []


def err(msg):
    errors.append(msg)


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

    deployments = by_kind.get("Deployment", {})
    sas = by_kind.get("ServiceAccount", {})
    if set(deployments) != {"gateway-fix", "gateway-binary", "gateway-rest", "settlement", "marketdata"}:
        err(f"{env}: unexpected deployments {sorted(deployments)}")

    tf_pairs = terraform_workloads()
    for name, d in deployments.items():
        spec = d["spec"]["template"]["spec"]
        sa = spec.get("serviceAccountName")
        if sa not in sas:
            err(f"{env}: {name} uses missing service account {sa}")
        if ("castle", sa) not in tf_pairs:
            err(f"{env}: {name}'s service account castle/{sa} has no Pod Identity association in Terraform")
        if not spec.get("securityContext", {}).get("runAsNonRoot"):
            err(f"{env}: {name} may run as root")
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            if not (sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False
                    and sc.get("capabilities", {}).get("drop") == ["ALL"]):
                err(f"{env}: {name}/{c['name']} security context not restricted")
            if "memory" not in c.get("resources", {}).get("limits", {}):
                err(f"{env}: {name}/{c['name']} has no memory limit")
    if ("keda", "keda-operator") not in tf_pairs:
        err("Terraform gives the KEDA operator (keda/keda-operator) no IAM role")

    services = by_kind.get("Service", {})
    for name, svc in services.items():
        if svc["spec"]["selector"]["app.kubernetes.io/name"] not in deployments:
            err(f"{env}: service {name} selects no deployment")

    auths = by_kind.get("TriggerAuthentication", {})
    scaled = by_kind.get("ScaledObject", {})
    for name, so in scaled.items():
        target = so["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            err(f"{env}: ScaledObject {name} targets missing deployment {target}")
        types = {t["type"] for t in so["spec"]["triggers"]}
        if "cpu" not in types:
            err(f"{env}: ScaledObject {name} has no cpu trigger")
        for t in so["spec"]["triggers"]:
            if t["type"] == "aws-kinesis-stream":
                if t["metadata"]["streamName"] != f"castle-{env}-events":
                    err(f"{env}: {name} scales on stream {t['metadata']['streamName']}, Terraform creates castle-{env}-events")
                if t.get("authenticationRef", {}).get("name") not in auths:
                    err(f"{env}: {name} references a missing TriggerAuthentication")
        if so["spec"]["minReplicaCount"] > so["spec"]["maxReplicaCount"]:
            err(f"{env}: {name} minReplicaCount > maxReplicaCount")
    for consumer in ("settlement", "marketdata"):
        types = {t["type"] for t in scaled.get(consumer, {}).get("spec", {}).get("triggers", [])}
        if not {"aws-kinesis-stream", "cpu"} <= types:
            err(f"{env}: {consumer} must scale on Kinesis and CPU (has {sorted(types)})")
    cm = by_kind.get("ConfigMap", {}).get("castle-config", {}).get("data", {})
    if cm.get("CASTLE_ENV") != env or cm.get("CASTLE_EVENTS_STREAM") != f"castle-{env}-events":
        err(f"{env}: castle-config not set for {env}: {cm}")
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


def main():
    check_edge_contract()
    total = 0
    for env in ("dev", "test", "prod"):
        n = check_env(env, load_kustomization(K8S / "overlays" / env))
        print(f"{env}: {n} objects")
        total += n
    pools = set(re.findall(r'"castle.io/pool" = "(\w+)"', (TF / "variables.tf").read_text()))
    wanted = set(re.findall(r"values: \[(\w+)\]", (K8S / "base" / "deployments.yaml").read_text()))
    if not wanted <= pools:
        err(f"deployments prefer pools {sorted(wanted)}, Terraform labels {sorted(pools)}")
    for e in errors:
        print("FAIL " + e)
    print(f"deploy manifests: {total} objects, {len(errors)} problems")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
