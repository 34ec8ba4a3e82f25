#!/usr/bin/env python3
"""Helpers for infra/test.sh's emulator stage (moto on loopback only).

  moto_aws.py free-port                 print a free TCP port on 127.0.0.1
  moto_aws.py wait URL                  wait until the moto server answers
  moto_aws.py bootstrap URL             create what other roots would have created: the state bucket and lock
                                        table (S3 backend) and the security account's central Config bucket
  moto_aws.py ami URL                   print the id of an x86_64 AMI moto knows (stands in for the Packer AMI)
  moto_aws.py verify URL                assert that the dev apply really created the emulated resources
  moto_aws.py verify-destroyed URL      assert that destroy removed them
"""
import base64
import json
import socket
import sys
import time

import boto3

REGION = "eu-west-1"
ENV = "castle-dev"
ACCOUNT = "123456789012"


def client(url, service):
    return boto3.client(service, endpoint_url=url, region_name=REGION,
                        aws_access_key_id="test", aws_secret_access_key="test")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def wait(url):
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            client(url, "sts").get_caller_identity()
            return
        except Exception:  # noqa: BLE001 - server not up yet
            time.sleep(0.5)
    sys.exit(f"moto did not answer at {url}")


def bootstrap(url):
    s3 = client(url, "s3")
    for bucket in ("castle-terraform-state-test", f"castle-security-config-{ACCOUNT}"):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket="castle-terraform-state-test", VersioningConfiguration={"Status": "Enabled"})
    client(url, "dynamodb").create_table(
        TableName="castle-terraform-locks",
        AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )


def ami(url):
    images = client(url, "ec2").describe_images(
        Owners=["amazon"], Filters=[{"Name": "architecture", "Values": ["x86_64"]}])["Images"]
    print(sorted(i["ImageId"] for i in images)[0])


class Checker:
    def __init__(self):
        self.failures = []
        self.count = 0

    def expect(self, cond, what):
        self.count += 1
        print(("ok   " if cond else "FAIL ") + what)
        if not cond:
            self.failures.append(what)


def verify(url):
    c = Checker()
    ec2 = client(url, "ec2")
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [ENV]}])["Vpcs"]
    c.expect(len(vpcs) == 1 and vpcs[0]["CidrBlock"] == "10.20.0.0/20", "VPC castle-dev 10.20.0.0/20")
    vpc_id = vpcs[0]["VpcId"] if vpcs else "none"
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    tiers = {}
    for s in subnets:
        tier = {t["Key"]: t["Value"] for t in s.get("Tags", [])}.get("Tier")
        tiers.setdefault(tier, set()).add(s["AvailabilityZone"])
    c.expect(all(tiers.get(t) == {"eu-west-1a", "eu-west-1b"} for t in ("public", "private", "data")),
             f"public/private/data subnets in both AZs ({ {k: sorted(v) for k, v in tiers.items()} })")
    sgs = {g["GroupName"] for g in ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["SecurityGroups"]}
    c.expect({f"{ENV}-engine-a", f"{ENV}-alb", f"{ENV}-nlb", f"{ENV}-ledger-aurora"} <= sgs, "engine, ALB, NLB and Aurora security groups")
    endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["VpcEndpoints"]
    c.expect(len(endpoints) >= 10, f"VPC endpoints ({len(endpoints)})")
    nats = [n for n in ec2.describe_nat_gateways()["NatGateways"] if n.get("VpcId") == vpc_id and n["State"] != "deleted"]
    c.expect(len(nats) == 1, "one NAT gateway (dev: single)")

    lts = ec2.describe_launch_templates(LaunchTemplateNames=[f"{ENV}-engine-a"])["LaunchTemplates"]
    c.expect(len(lts) == 1, "engine launch template")
    if lts:
        data = ec2.describe_launch_template_versions(LaunchTemplateId=lts[0]["LaunchTemplateId"], Versions=["$Latest"])[
            "LaunchTemplateVersions"][0]["LaunchTemplateData"]
        c.expect(data.get("MetadataOptions", {}).get("HttpTokens") == "required", "launch template requires IMDSv2")
        c.expect(all(b["Ebs"].get("Encrypted") for b in data.get("BlockDeviceMappings", [])), "launch template volumes encrypted")
        user_data = base64.b64decode(data.get("UserData", "")).decode()
        referee = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": [f"{ENV}-engine-a-referee"]},
                                                  {"Name": "instance-state-name", "Values": ["running"]}])
        referee = [i for r in referee["Reservations"] for i in r["Instances"]]
        c.expect(len(referee) == 1, "fencing referee instance running")
        if referee:
            # Its AZ is its (fixed) interface's; the engines' is their ASG subnet's.
            enis = ec2.describe_network_interfaces(
                Filters=[{"Name": "attachment.instance-id", "Values": [referee[0]["InstanceId"]]}])["NetworkInterfaces"]
            asg = client(url, "autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[f"{ENV}-engine-a"])
            engine_subnets = [g["VPCZoneIdentifier"] for g in asg["AutoScalingGroups"]]
            engine_az = ec2.describe_subnets(SubnetIds=engine_subnets[0].split(","))["Subnets"][0]["AvailabilityZone"] \
                if engine_subnets else None
            referee_az = enis[0]["AvailabilityZone"] if enis else None
            c.expect(referee_az is not None and engine_az is not None and referee_az != engine_az,
                     f"referee in another AZ ({referee_az}) than the engines ({engine_az})")
            ip = referee[0]["PrivateIpAddress"]
            c.expect(f"CASTLE_REFEREE={ip}:7500" in user_data and "CASTLE_NODE_ID=" in user_data,
                     f"engine user data names the referee at {ip}:7500 and sets a node id")
            c.expect(referee[0].get("MetadataOptions", {}).get("HttpTokens") == "required", "referee requires IMDSv2")
            vols = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [referee[0]["InstanceId"]]}])["Volumes"]
            c.expect(any(a["Device"] == "/dev/sdg" for v in vols for a in v["Attachments"]) and all(v["Encrypted"] for v in vols),
                     "referee state volume attached as /dev/sdg, volumes encrypted")
    asgs = client(url, "autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[f"{ENV}-engine-a"])["AutoScalingGroups"]
    c.expect(len(asgs) == 1 and asgs[0]["DesiredCapacity"] == 1, "engine ASG with one instance")

    s3 = client(url, "s3")
    archive = f"{ENV}-archive-{ACCOUNT}"
    lock = s3.get_object_lock_configuration(Bucket=archive)["ObjectLockConfiguration"]
    c.expect(lock["ObjectLockEnabled"] == "Enabled", "archive bucket object lock")
    rules = s3.get_bucket_lifecycle_configuration(Bucket=archive)["Rules"]
    classes = {t["StorageClass"] for r in rules for t in r.get("Transitions", [])}
    c.expect({"GLACIER_IR", "DEEP_ARCHIVE"} <= classes, f"archive lifecycle to Glacier ({sorted(classes)})")
    for bucket in (b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith(ENV)):
        enc = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
        pab = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        c.expect(enc["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("aws:kms", "AES256") and all(pab.values()),
                 f"bucket {bucket} encrypted and not public")
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
        c.expect(any(s.get("Sid") == "DenyInsecureTransport" for s in policy["Statement"]), f"bucket {bucket} TLS-only policy")

    stream = client(url, "kinesis").describe_stream_summary(StreamName=f"{ENV}-events")["StreamDescriptionSummary"]
    c.expect(stream["EncryptionType"] == "KMS", "Kinesis events stream KMS-encrypted")

    kms = client(url, "kms")
    aliases = {a["AliasName"] for a in kms.list_aliases()["Aliases"]}
    classes = {"trading", "ledger", "marketdata", "archive", "logs", "secrets"}
    c.expect({f"alias/{ENV}/{k}" for k in classes} <= aliases, "one KMS key per data class")

    iam = client(url, "iam")
    c.expect(iam.get_role(RoleName=f"{ENV}-engine-a")["Role"]["RoleName"] == f"{ENV}-engine-a", "engine IAM role")

    lbs = {lb["LoadBalancerName"]: lb for lb in client(url, "elbv2").describe_load_balancers()["LoadBalancers"]}
    c.expect(lbs.get(f"{ENV}-rest", {}).get("Type") == "application", "ALB for REST/WebSocket")
    c.expect(lbs.get(f"{ENV}-orders", {}).get("Type") == "network", "NLB for FIX/binary")

    clusters = client(url, "rds").describe_db_clusters()["DBClusters"]
    ledger = [x for x in clusters if x["DBClusterIdentifier"] == f"{ENV}-ledger"]
    c.expect(len(ledger) == 1 and ledger[0]["StorageEncrypted"], "Aurora ledger cluster encrypted")
    if ledger:
        c.expect(len(ledger[0]["DBClusterMembers"]) == 2, "Aurora writer + reader (multi-AZ)")

    acls = client(url, "wafv2").list_web_acls(Scope="REGIONAL")["WebACLs"]
    c.expect(any(a["Name"] == f"{ENV}-regional" for a in acls), "regional WAF web ACL")

    detectors = client(url, "guardduty").list_detectors()["DetectorIds"]
    c.expect(len(detectors) == 1, "GuardDuty detector")

    print(f"{c.count - len(c.failures)} of {c.count} emulator checks passed")
    sys.exit(1 if c.failures else 0)


def verify_destroyed(url):
    left = []
    ec2 = client(url, "ec2")
    if ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [ENV]}])["Vpcs"]:
        left.append("vpc")
    if [b for b in client(url, "s3").list_buckets()["Buckets"] if b["Name"].startswith(ENV)]:
        left.append("buckets")
    if client(url, "kinesis").list_streams()["StreamNames"]:
        left.append("kinesis")
    if client(url, "autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]:
        left.append("asg")
    running = ec2.describe_instances(Filters=[{"Name": "tag:castle:role", "Values": ["referee"]},
                                              {"Name": "instance-state-name", "Values": ["pending", "running"]}])
    if any(r["Instances"] for r in running["Reservations"]):
        left.append("referee instance")
    if [x for x in client(url, "rds").describe_db_clusters()["DBClusters"] if x["DBClusterIdentifier"].startswith(ENV)]:
        left.append("aurora")
    print("left behind: " + (", ".join(left) or "nothing"))
    sys.exit(1 if left else 0)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "free-port":
        free_port()
    elif cmd == "wait":
        wait(sys.argv[2])
    elif cmd == "bootstrap":
        bootstrap(sys.argv[2])
    elif cmd == "ami":
        ami(sys.argv[2])
    elif cmd == "verify":
        verify(sys.argv[2])
    elif cmd == "verify-destroyed":
        verify_destroyed(sys.argv[2])
    else:
        sys.exit(__doc__)
