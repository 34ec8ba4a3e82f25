#!/usr/bin/env python3
"""Render the TargetGroupBindings that attach gateway pods to the Terraform-managed ALB/NLB target groups.

The load balancers, listeners, WAF and target groups are Terraform's (infra/terraform/modules/edge); the AWS
Load Balancer Controller only registers pod IPs into them. The target group ARNs exist only after apply,
so they are read from the environment root's outputs:

    deploy/k8s/render-target-group-bindings.py dev | kubectl apply -f -
    deploy/k8s/render-target-group-bindings.py dev --outputs outputs.json   # saved `terraform output -json`
"""
import argparse
import json
import pathlib
import subprocess
import sys

# target group key (modules/edge output target_group_arns) -> (service, port)
BINDINGS = {
    "rest": ("gateway-rest", 8080),
    # WebSocket streams are served on the REST port (/api/v1/ws); their target group differs only in
    # stickiness and drain time.
    "ws": ("gateway-rest", 8080),
    "fix": ("gateway-fix", 9880),
    # modules/edge also makes a "binary" target group (NLB port 9890) for gateway-binary, which is not built
    # (a stub crate): nothing is bound to it.
}


def load_outputs(env, path):
    if path:
        data = json.loads(pathlib.Path(path).read_text())
    else:
        root = pathlib.Path(__file__).resolve().parents[2] / "infra" / "terraform" / "live" / env
        data = json.loads(subprocess.run(["terraform", f"-chdir={root}", "output", "-json"],
                                         check=True, capture_output=True, text=True).stdout)
    return data["environment"]["value"]


def render(env, outputs):
    arns = outputs.get("target_group_arns") or {}
    missing = sorted(set(BINDINGS) - set(arns))
    if missing:
        sys.exit(f"{env}: no target group ARN for {', '.join(missing)} (is the edge feature on?)")
    docs = []
    for key, (service, port) in BINDINGS.items():
        docs.append("\n".join([
            "apiVersion: elbv2.k8s.aws/v1beta1",
            "kind: TargetGroupBinding",
            "metadata:",
            f"  name: {service}-{key}",
            "  namespace: castle",
            "  labels:",
            f"    castle.io/environment: {env}",
            "spec:",
            f"  targetGroupARN: {arns[key]}",
            "  targetType: ip",
            "  serviceRef:",
            f"    name: {service}",
            f"    port: {port}",
        ]))
    return "---\n".join(d + "\n" for d in docs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env", choices=["dev", "test", "prod"])
    parser.add_argument("--outputs", help="file with `terraform output -json` of infra/terraform/live/<env>")
    args = parser.parse_args()
    sys.stdout.write(render(args.env, load_outputs(args.env, args.outputs)))


if __name__ == "__main__":
    main()
