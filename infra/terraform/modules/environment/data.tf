# ---- Aurora PostgreSQL: the settlement ledger.
data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  count = local.f.aurora ? 1 : 0

  name               = "${local.name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  count = local.f.aurora ? 1 : 0

  role       = aws_iam_role.rds_monitoring[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

module "aurora" {
  count  = local.f.aurora ? 1 : 0
  source = "../aurora"

  name                    = "${local.name}-ledger"
  vpc_id                  = module.network.vpc_id
  subnet_ids              = module.network.data_subnet_ids
  allowed_security_groups = local.workload_sgs
  instance_class          = local.s.aurora_instance_class
  instance_count          = local.s.aurora_instances
  kms_key_arn             = module.kms.key_arns["ledger"]
  deletion_protection     = !var.throwaway
  skip_final_snapshot     = var.throwaway
  backup_retention_days   = var.environment == "prod" ? 35 : 7
  monitoring_role_arn     = aws_iam_role.rds_monitoring[0].arn
  tags                    = local.tags
}

# Without EKS (emulator) the data stores accept the VPC CIDR instead of the node security group.
resource "aws_vpc_security_group_ingress_rule" "aurora_vpc" {
  for_each = local.f.aurora ? toset(local.workload_cidrs) : toset([])

  security_group_id = module.aurora[0].security_group_id
  description       = "PostgreSQL from the VPC"
  ip_protocol       = "tcp"
  from_port         = 5432
  to_port           = 5432
  cidr_ipv4         = each.value
}

# ---- ElastiCache Redis: market data streams and snapshots.
module "redis" {
  count  = local.f.redis ? 1 : 0
  source = "../redis"

  name                    = "${local.name}-md"
  vpc_id                  = module.network.vpc_id
  subnet_ids              = module.network.data_subnet_ids
  allowed_security_groups = local.workload_sgs
  node_type               = local.s.redis_node_type
  shards                  = local.s.redis_shards
  replicas_per_shard      = local.s.redis_replicas
  kms_key_arn             = module.kms.key_arns["marketdata"]
  log_group_name          = module.observability.log_group_names["redis"]
  snapshot_retention_days = var.environment == "prod" ? 7 : 1
  tags                    = local.tags
}
