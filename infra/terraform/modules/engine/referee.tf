# The fencing referee of this shard's engine nodes: `castle referee` on a small instance in another AZ.
# A primary accepts orders only while it holds the referee's lease; promoting a standby claims the next
# epoch there (ARCHITECTURE.md "Fencing with a referee").
locals {
  referee      = var.referee != null
  referee_addr = local.referee ? "${aws_network_interface.referee[0].private_ip}:${var.referee.port}" : null
}

resource "aws_security_group" "referee" {
  count = local.referee ? 1 : 0

  name        = "${var.name}-referee"
  description = "Castle engine ${var.shard} fencing referee"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-referee" })
}

resource "aws_vpc_security_group_ingress_rule" "referee_from_engines" {
  count = local.referee ? 1 : 0

  security_group_id            = aws_security_group.referee[0].id
  description                  = "leases and promotion claims from the engine nodes"
  ip_protocol                  = "tcp"
  from_port                    = var.referee.port
  to_port                      = var.referee.port
  referenced_security_group_id = aws_security_group.this.id
}

resource "aws_vpc_security_group_egress_rule" "referee_all" {
  count = local.referee ? 1 : 0

  security_group_id = aws_security_group.referee[0].id
  description       = "AWS APIs through VPC endpoints (SSM, CloudWatch), NTP to the link-local time sync service"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

# A fixed interface: the engines' user data names the referee by its address, which survives a
# replacement of the instance.
resource "aws_network_interface" "referee" {
  count = local.referee ? 1 : 0

  subnet_id       = var.referee.subnet_id
  security_groups = [aws_security_group.referee[0].id]
  description     = "Castle engine ${var.shard} fencing referee"
  tags            = merge(var.tags, { Name = "${var.name}-referee" })
}

data "aws_subnet" "referee" {
  count = local.referee ? 1 : 0

  id = var.referee.subnet_id
}

# The referee's state file (epoch, holder, the epoch's first seq, holder address): losing it is outside
# the fencing's failure model, so it lives on a volume of its own that outlives the instance.
resource "aws_ebs_volume" "referee_state" {
  count = local.referee ? 1 : 0

  availability_zone = data.aws_subnet.referee[0].availability_zone
  size              = var.referee.state_volume_gb
  type              = "gp3"
  encrypted         = true
  kms_key_id        = var.kms_key_arn
  tags              = merge(var.tags, { Name = "${var.name}-referee-state", "castle:shard" = var.shard })
}

resource "aws_iam_role" "referee" {
  count = local.referee ? 1 : 0

  name               = "${var.name}-referee"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "referee_ssm" {
  count = local.referee ? 1 : 0

  role       = aws_iam_role.referee[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "referee" {
  count = local.referee ? 1 : 0

  name = "${var.name}-referee"
  role = aws_iam_role.referee[0].name
  tags = var.tags
}

resource "aws_instance" "referee" {
  count = local.referee ? 1 : 0

  # The engine AMI carries the castle binary and the castle user; the referee needs no tuning.
  ami                  = local.ami_id
  instance_type        = var.referee.instance_type
  iam_instance_profile = aws_iam_instance_profile.referee[0].name

  network_interface {
    network_interface_id = aws_network_interface.referee[0].id
    device_index         = 0
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = var.root_volume_gb
    encrypted   = true
    kms_key_id  = var.kms_key_arn
  }

  user_data = templatefile("${path.module}/referee-user-data.sh.tftpl", {
    port     = var.referee.port
    lease_ms = var.referee.lease_ms
  })

  tags        = merge(var.tags, { Name = "${var.name}-referee", "castle:shard" = var.shard, "castle:role" = "referee" })
  volume_tags = merge(var.tags, { Name = "${var.name}-referee", "castle:shard" = var.shard })
}

resource "aws_volume_attachment" "referee_state" {
  count = local.referee ? 1 : 0

  device_name = "/dev/sdg"
  volume_id   = aws_ebs_volume.referee_state[0].id
  instance_id = aws_instance.referee[0].id
}
