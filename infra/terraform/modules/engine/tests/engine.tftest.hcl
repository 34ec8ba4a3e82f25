mock_provider "aws" {
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  # Mocked ids look like real ones where the ASG's placement group reference is checked.
  mock_resource "aws_placement_group" {
    defaults = { id = "castle-test-engine-a" }
  }
  mock_resource "aws_iam_instance_profile" {
    defaults = { arn = "arn:aws:iam::123456789012:instance-profile/castle-test-engine-a" }
  }
  mock_resource "aws_launch_template" {
    defaults = { id = "lt-0123456789abcdef0", latest_version = 1 }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/castle-test-engine-a" }
  }
  mock_resource "aws_network_interface" {
    defaults = { id = "eni-0123456789abcdef0", private_ip = "10.0.2.17" }
  }
  mock_data "aws_subnet" {
    defaults = { availability_zone = "eu-west-1b" }
  }
  mock_resource "aws_security_group" {
    defaults = { id = "sg-0123456789abcdef0" }
  }
}

variables {
  name          = "castle-test-engine-a"
  shard         = "a"
  vpc_id        = "vpc-0123456789abcdef0"
  subnet_id     = "subnet-0123456789abcdef0"
  ami_id        = "ami-0123456789abcdef0"
  instance_type = "c7i.metal-24xl"
  kms_key_arn   = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
  ingress = {
    security_groups = { gateways = "sg-0aaaaaaaaaaaaaaaa" }
  }
  referee = {
    subnet_id = "subnet-0fedcba9876543210"
  }
}

run "engine_asg_in_cluster_placement_group" {
  command = apply

  assert {
    condition     = aws_placement_group.this[0].strategy == "cluster"
    error_message = "The engine needs a cluster placement group."
  }
  assert {
    condition     = aws_autoscaling_group.this.placement_group == aws_placement_group.this[0].name
    error_message = "The ASG must launch into the cluster placement group."
  }
  assert {
    condition     = aws_autoscaling_group.this.vpc_zone_identifier == toset([var.subnet_id])
    error_message = "A cluster placement group is single-AZ: the ASG must use exactly one subnet."
  }
  assert {
    condition     = aws_autoscaling_group.this.min_size == 2 && aws_autoscaling_group.this.max_size == 2
    error_message = "Primary plus one standby by default, fixed size."
  }
  assert {
    condition     = aws_autoscaling_group.this.protect_from_scale_in
    error_message = "Engines must be protected from scale-in."
  }
}

run "launch_template_hardened" {
  command = apply

  assert {
    condition     = one(aws_launch_template.this.metadata_options).http_tokens == "required"
    error_message = "IMDSv2 must be required."
  }
  assert {
    condition     = one(aws_launch_template.this.metadata_options).http_put_response_hop_limit == 1
    error_message = "IMDS hop limit must be 1."
  }
  assert {
    condition     = alltrue([for b in aws_launch_template.this.block_device_mappings : one(b.ebs).encrypted == "true"])
    error_message = "Every EBS volume must be encrypted."
  }
  assert {
    condition     = alltrue([for b in aws_launch_template.this.block_device_mappings : one(b.ebs).kms_key_id == var.kms_key_arn])
    error_message = "Volumes must use the trading key."
  }
  assert {
    condition     = one([for b in aws_launch_template.this.block_device_mappings : one(b.ebs).volume_type if b.device_name == "/dev/sdf"]) == "io2"
    error_message = "The journal volume must be io2."
  }
  assert {
    condition     = one(aws_launch_template.this.network_interfaces).associate_public_ip_address == "false"
    error_message = "Engines have no public IP."
  }
  assert {
    condition     = aws_launch_template.this.image_id == var.ami_id
    error_message = "The launch template must use the given Packer AMI."
  }
}

run "engine_env_in_user_data" {
  command = plan

  assert {
    condition     = strcontains(base64decode(aws_launch_template.this.user_data), "CASTLE_SHARD=a")
    error_message = "User data must pass the shard to the engine."
  }
  assert {
    condition     = strcontains(base64decode(aws_launch_template.this.user_data), "CASTLE_LISTEN=0.0.0.0:7400") && strcontains(base64decode(aws_launch_template.this.user_data), "CASTLE_METRICS_LISTEN=0.0.0.0:9100") && strcontains(base64decode(aws_launch_template.this.user_data), "CASTLE_JOURNAL_DIR=/var/lib/castle/journal")
    error_message = "User data must give castle engine its listener, metrics/probe address and journal directory in the variables it reads."
  }
  assert {
    condition     = strcontains(base64decode(aws_launch_template.this.user_data), "castle-verify-tuning")
    error_message = "User data must verify the tuning before starting the engine."
  }
}

run "referee_on_its_own_host_and_the_engines_fenced_by_it" {
  command = apply

  assert {
    condition     = aws_network_interface.referee[0].subnet_id == var.referee.subnet_id && aws_instance.referee[0].instance_type == "t3.small"
    error_message = "The referee runs on its own small instance behind a fixed interface in the referee subnet."
  }
  assert {
    condition     = strcontains(base64decode(aws_launch_template.this.user_data), "CASTLE_REFEREE=10.0.2.17:7500")
    error_message = "Every engine must be given the referee's fixed address."
  }
  assert {
    condition     = strcontains(base64decode(aws_launch_template.this.user_data), "echo \"CASTLE_NODE_ID=$(((o1 << 24)") && strcontains(base64decode(aws_launch_template.this.user_data), "echo \"CASTLE_ADVERTISE=$ip:7400\"")
    error_message = "Every engine must get a node id of its own and advertise its address on the command port."
  }
  assert {
    condition     = strcontains(aws_instance.referee[0].user_data, "ExecStart=/usr/local/bin/castle referee") && strcontains(aws_instance.referee[0].user_data, "CASTLE_REFEREE_LISTEN=0.0.0.0:7500") && strcontains(aws_instance.referee[0].user_data, "CASTLE_REFEREE_STATE=/var/lib/castle/referee/state") && strcontains(aws_instance.referee[0].user_data, "CASTLE_LEASE_MS=2000")
    error_message = "The referee's user data must run castle referee as a service with its state on the state volume."
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.referee_from_engines[0].from_port == 7500 && aws_vpc_security_group_ingress_rule.referee_from_engines[0].referenced_security_group_id == aws_security_group.this.id
    error_message = "Only the engine nodes may reach the referee, on its port."
  }
  assert {
    condition     = aws_ebs_volume.referee_state[0].encrypted && aws_ebs_volume.referee_state[0].kms_key_id == var.kms_key_arn && aws_ebs_volume.referee_state[0].availability_zone == "eu-west-1b"
    error_message = "The referee's state lives on an encrypted volume of its own in the referee's AZ."
  }
  assert {
    condition     = one(aws_instance.referee[0].metadata_options).http_tokens == "required" && one(aws_instance.referee[0].root_block_device).encrypted
    error_message = "The referee instance needs IMDSv2 and an encrypted root volume."
  }
}

run "two_engines_need_the_referee" {
  command = plan

  variables {
    referee = null
  }

  expect_failures = [aws_autoscaling_group.this]
}

run "one_engine_without_referee" {
  command = plan

  variables {
    referee        = null
    instance_count = 1
  }

  assert {
    condition     = length(aws_instance.referee) == 0 && !strcontains(base64decode(aws_launch_template.this.user_data), "CASTLE_REFEREE")
    error_message = "Without a referee nothing of it is created and the engine is not told of one."
  }
}

run "rejects_too_many_instances" {
  command = plan

  variables {
    instance_count = 9
  }

  expect_failures = [var.instance_count]
}
