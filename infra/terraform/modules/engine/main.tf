data "aws_partition" "current" {}
data "aws_region" "current" {}

data "aws_ami" "engine" {
  count = var.ami_id == null ? 1 : 0

  owners      = ["self"]
  most_recent = true

  filter {
    name   = "name"
    values = [var.ami_name_pattern]
  }
  filter {
    name   = "state"
    values = ["available"]
  }
}

locals {
  ami_id = coalesce(var.ami_id, try(data.aws_ami.engine[0].id, null))

  engine_env = merge({
    # Read by `castle engine` (castle/src/engine_cmd.rs): one listener serves
    # gateways, event subscribers and standbys; metrics and the /live and
    # /ready probes on their own port.
    CASTLE_SHARD          = var.shard
    CASTLE_LISTEN         = "0.0.0.0:${var.ports.command}"
    CASTLE_METRICS_LISTEN = "0.0.0.0:${var.ports.metrics}"
    CASTLE_JOURNAL_DIR    = "/var/lib/castle/journal"
    AWS_REGION            = data.aws_region.current.name
    }, local.referee ? {
    # Fencing (referee.tf); CASTLE_NODE_ID and CASTLE_ADVERTISE are per instance (user data).
    CASTLE_REFEREE = local.referee_addr
  } : {}, var.environment)
}

# All instances of the group on the same spine: lowest, least variable latency between primary and standbys.
resource "aws_placement_group" "this" {
  count = var.placement_group ? 1 : 0

  name     = var.name
  strategy = "cluster"
  tags     = var.tags
}

resource "aws_security_group" "this" {
  name        = var.name
  description = "Castle engine ${var.shard}"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = var.name })
}

locals {
  ingress_ports = {
    command = var.ports.command
    metrics = var.ports.metrics
  }
  sg_rules = merge(
    { for p in setproduct(keys(local.ingress_ports), keys(var.ingress.security_groups)) : "${p[0]}-${p[1]}" => { port = local.ingress_ports[p[0]], sg = var.ingress.security_groups[p[1]], cidr = null } },
    { for p in setproduct(keys(local.ingress_ports), var.ingress.cidr_blocks) : "${p[0]}-${p[1]}" => { port = local.ingress_ports[p[0]], sg = null, cidr = p[1] } },
  )
}

resource "aws_vpc_security_group_ingress_rule" "this" {
  for_each = local.sg_rules

  security_group_id            = aws_security_group.this.id
  description                  = "engine ${split("-", each.key)[0]} port"
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
  referenced_security_group_id = each.value.sg
  cidr_ipv4                    = each.value.cidr
}

# Standbys replay the primary's journal stream from inside the group.
resource "aws_vpc_security_group_ingress_rule" "peers" {
  security_group_id            = aws_security_group.this.id
  description                  = "journal replication between primary and standbys"
  ip_protocol                  = "tcp"
  from_port                    = var.ports.command
  to_port                      = var.ports.command
  referenced_security_group_id = aws_security_group.this.id
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.this.id
  description       = "AWS APIs through VPC endpoints, NTP to the link-local time sync service"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name               = var.name
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "ssm" {
  role       = aws_iam_role.this.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_role_policy_attachment" "cloudwatch_agent" {
  role       = aws_iam_role.this.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/CloudWatchAgentServerPolicy"
}

data "aws_iam_policy_document" "engine" {
  statement {
    sid       = "UseTradingKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = [var.kms_key_arn]
  }

  dynamic "statement" {
    for_each = var.journal_bucket_arn == null ? [] : [var.journal_bucket_arn]
    content {
      sid       = "ShipJournalSegments"
      actions   = ["s3:PutObject", "s3:GetObject", "s3:ListBucket"]
      resources = [statement.value, "${statement.value}/engine/${var.shard}/*"]
    }
  }
}

resource "aws_iam_role_policy" "engine" {
  name   = "castle-engine"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.engine.json
}

resource "aws_iam_instance_profile" "this" {
  name = var.name
  role = aws_iam_role.this.name
  tags = var.tags
}

resource "aws_launch_template" "this" {
  name                   = var.name
  description            = "Castle engine ${var.shard} on the Packer-built low-latency AMI"
  image_id               = local.ami_id
  instance_type          = var.instance_type
  ebs_optimized          = true
  update_default_version = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.this.arn
  }

  # IMDSv2 only, not reachable from containers or forwarded packets (hop limit 1). The org SCP denies anything else.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "enabled"
  }

  monitoring {
    enabled = true
  }

  dynamic "cpu_options" {
    for_each = var.threads_per_core == null ? [] : [var.threads_per_core]
    content {
      threads_per_core = cpu_options.value
    }
  }

  network_interfaces {
    device_index                = 0
    associate_public_ip_address = false
    security_groups             = [aws_security_group.this.id]
    delete_on_termination       = true
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_type           = "gp3"
      volume_size           = var.root_volume_gb
      iops                  = 3000
      throughput            = 125
      encrypted             = true
      kms_key_id            = var.kms_key_arn
      delete_on_termination = true
    }
  }

  block_device_mappings {
    device_name = "/dev/sdf"
    ebs {
      volume_type           = var.journal_volume.type
      volume_size           = var.journal_volume.size_gb
      iops                  = var.journal_volume.iops
      throughput            = var.journal_volume.type == "gp3" ? 250 : null
      encrypted             = true
      kms_key_id            = var.kms_key_arn
      delete_on_termination = false
    }
  }

  user_data = base64encode(templatefile("${path.module}/user-data.sh.tftpl", {
    engine_env     = local.engine_env
    log_group_name = var.log_group_name
    referee        = local.referee
    command_port   = var.ports.command
  }))

  tag_specifications {
    resource_type = "instance"
    tags          = merge(var.tags, { Name = var.name, "castle:shard" = var.shard, "castle:role" = "engine" })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(var.tags, { Name = var.name, "castle:shard" = var.shard })
  }

  tags = var.tags
}

resource "aws_autoscaling_group" "this" {
  name                = var.name
  min_size            = var.instance_count
  max_size            = var.instance_count
  desired_capacity    = var.instance_count
  placement_group     = one(aws_placement_group.this[*].name)
  vpc_zone_identifier = [var.subnet_id]
  health_check_type   = "EC2"

  # An engine is never replaced behind the operator's back: failover to a standby is a deliberate act.
  protect_from_scale_in = true
  # Protected instances never terminate by scaling to zero, so destroy needs force_delete.
  force_delete         = var.force_delete
  termination_policies = ["OldestLaunchTemplate", "OldestInstance"]
  enabled_metrics      = ["GroupDesiredCapacity", "GroupInServiceInstances", "GroupTerminatingInstances", "GroupTotalInstances"]

  launch_template {
    id      = aws_launch_template.this.id
    version = aws_launch_template.this.latest_version
  }

  lifecycle {
    precondition {
      condition     = var.instance_count == 1 || var.referee != null
      error_message = "More than one engine instance needs the fencing referee (var.referee): unfenced, every instance would accept orders."
    }
  }

  dynamic "tag" {
    for_each = merge(var.tags, { Name = var.name, "castle:shard" = var.shard })
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }
}
