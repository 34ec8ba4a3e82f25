data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  name      = "castle-${var.environment}"
  region    = data.aws_region.current.name
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  f         = var.features
  s         = var.sizing

  tags = merge(var.tags, {
    Project     = "castle"
    Environment = var.environment
    ManagedBy   = "terraform"
  })

  # Bucket names must be globally unique: suffix with the account id.
  archive_bucket = "${local.name}-archive-${local.account}"
}

# ---- Account baseline (GuardDuty, Security Hub, Config, EBS default encryption, S3 public access block).
module "baseline" {
  source = "../account-baseline"

  name_prefix     = local.name
  config_delivery = var.config_delivery
  ebs_kms_key_arn = module.kms.key_arns["trading"]
  features = {
    guardduty                   = local.f.guardduty
    security_hub                = local.f.security_hub
    config                      = local.f.config
    access_analyzer             = local.f.access_analyzer
    ebs_default_key             = local.f.ebs_default_key
    guardduty_features          = local.f.guardduty_features
    account_public_access_block = local.f.account_s3_block
  }
  create_autoscaling_service_linked_role = var.create_autoscaling_service_linked_role
  tags                                   = local.tags
}

# ---- One KMS key per data class. A key grant never spans two classes.
module "kms" {
  source = "../kms"

  name_prefix     = local.name
  admin_role_arns = var.admin_role_arns
  data_classes = {
    trading = {
      description = "engine journal and snapshots, engine EBS volumes"
      user_arns   = [module.baseline.autoscaling_service_linked_role_arn]
    }
    ledger = {
      description = "settlement ledger: Aurora storage, Performance Insights, master secret"
    }
    marketdata = {
      description = "Kinesis event streams, ElastiCache Redis"
    }
    archive = {
      description = "S3 event archive, Athena results, Glue, Redshift"
    }
    logs = {
      description        = "CloudWatch log groups and the alarm topic"
      service_principals = ["logs.${local.region}.amazonaws.com", "cloudwatch.amazonaws.com"]
    }
    secrets = {
      description = "Kubernetes secrets, EKS node volumes"
      user_arns   = [module.baseline.autoscaling_service_linked_role_arn]
    }
  }
  tags = local.tags
}

# ---- Network.
module "network" {
  source = "../network"

  name                = local.name
  cidr_block          = var.vpc_cidr
  availability_zones  = var.availability_zones
  nat_gateway_mode    = local.f.nat_gateways ? local.s.nat_gateway_mode : "none"
  interface_endpoints = local.f.interface_endpoints ? ["sts", "kms", "logs", "monitoring", "kinesis-streams", "secretsmanager", "ssm", "ssmmessages", "ec2messages", "ecr.api", "ecr.dkr", "xray", "elasticache", "eks", "eks-auth"] : []
  flow_logs           = local.f.flow_logs ? { kms_key_arn = module.kms.key_arns["logs"], retention_days = var.environment == "prod" ? 400 : 30 } : null
  transit_gateway     = var.transit_gateway == null ? null : { id = var.transit_gateway.id, routed_cidrs = var.transit_gateway.routed_cidrs }
  multicast_domain_id = try(var.transit_gateway.multicast_domain_id, null)
  eks_cluster_name    = local.f.eks ? local.name : null
  tags                = local.tags
}

# ---- Observability (log groups first: other modules write into them).
module "observability" {
  source = "../observability"

  name_prefix  = local.name
  kms_key_arn  = module.kms.key_arns["logs"]
  alarm_emails = var.alarm_emails
  xray         = local.f.xray ? {} : null
  targets = {
    engine_asg_names        = [for m in module.engine : m.autoscaling_group_name]
    aurora_cluster_id       = local.f.aurora ? "${local.name}-ledger" : null
    redis_replication_group = local.f.redis ? "${local.name}-md" : null
    kinesis_stream_names    = ["${local.name}-events"]
    load_balancers          = local.f.edge
    alb_arn_suffix          = local.f.edge ? module.edge[0].alb_arn_suffix : null
    nlb_arn_suffix          = local.f.edge ? module.edge[0].nlb_arn_suffix : null
  }
  tags = local.tags
}

# ---- Streams and archive.
module "analytics" {
  source = "../analytics"

  name_prefix         = local.name
  archive_bucket_name = local.archive_bucket
  kms_key_arn         = module.kms.key_arns["archive"]
  stream_names        = ["events"]
  archive_retention = var.throwaway ? {
    lock_mode         = "GOVERNANCE"
    lock_days         = 1
    glacier_ir_days   = 30
    deep_archive_days = 90
    expire_days       = 365
  } : {}
  redshift = local.f.redshift ? {
    base_capacity_rpu  = local.s.redshift_base_rpu
    max_capacity_rpu   = local.s.redshift_max_rpu
    subnet_ids         = module.network.data_subnet_ids
    security_group_ids = [aws_security_group.redshift[0].id]
  } : null
  force_destroy = var.throwaway
  tags          = local.tags
}

module "streaming" {
  source = "../streaming"

  name_prefix = local.name
  kms_key_arn = module.kms.key_arns["marketdata"]
  streams = {
    events = {
      on_demand   = local.s.kinesis_on_demand
      shard_count = local.s.kinesis_shards
    }
  }
  archive = local.f.firehose ? {
    bucket_arn     = module.analytics.archive_bucket_arn
    kms_key_arn    = module.kms.key_arns["archive"]
    log_group_name = module.observability.log_group_names["firehose"]
  } : null
  tags = local.tags
}

resource "aws_security_group" "redshift" {
  count = local.f.redshift ? 1 : 0

  name        = "${local.name}-redshift"
  description = "Redshift Serverless workgroup (analysts through the VPN/TGW)"
  vpc_id      = module.network.vpc_id
  tags        = merge(local.tags, { Name = "${local.name}-redshift" })
}

resource "aws_vpc_security_group_ingress_rule" "redshift" {
  for_each = local.f.redshift && var.transit_gateway != null ? toset(var.transit_gateway.routed_cidrs) : toset([])

  security_group_id = aws_security_group.redshift[0].id
  description       = "Redshift from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 5439
  to_port           = 5439
  cidr_ipv4         = each.value
}
