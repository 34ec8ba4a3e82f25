# ---- EKS for gateway-fix, gateway-rest, settlement, marketdata and archive (deploy/k8s), with KEDA
# scaling the gateways on CPU.
locals {
  events_stream_arn = module.streaming.stream_arns["events"]

  workload_policies = {
    keda-operator = {
      service_account = "keda-operator"
      namespace       = "keda"
      statements = [
        { actions = ["cloudwatch:GetMetricData", "cloudwatch:GetMetricStatistics"], resources = ["*"] },
      ]
    }
    # `castle archive` writes every engine event into the events stream (Firehose delivers it to S3).
    # settlement and marketdata follow the engine over TCP and never read Kinesis.
    archive = {
      service_account = "castle-archive"
      namespace       = "castle"
      statements = [
        { actions = ["kinesis:PutRecord", "kinesis:PutRecords", "kinesis:DescribeStreamSummary", "kinesis:ListShards"], resources = [local.events_stream_arn] },
        { actions = ["kms:GenerateDataKey"], resources = [module.kms.key_arns["marketdata"]] },
      ]
    }
    settlement = {
      service_account = "castle-settlement"
      namespace       = "castle"
      statements = concat(
        [{ actions = ["kms:Decrypt"], resources = [module.kms.key_arns["ledger"]] }],
        local.f.aurora ? [
          { actions = ["rds-db:connect"], resources = ["arn:${local.partition}:rds-db:${local.region}:${local.account}:dbuser:*/castle_settlement"] },
          { actions = ["secretsmanager:GetSecretValue"], resources = compact([module.aurora[0].master_user_secret_arn]) },
        ] : [],
      )
    }
    marketdata = {
      service_account = "castle-marketdata"
      namespace       = "castle"
      statements = concat(
        [{ actions = ["kms:Decrypt"], resources = [module.kms.key_arns["marketdata"]] }],
        local.f.redis ? [{ actions = ["elasticache:Connect"], resources = [module.redis[0].replication_group_arn, module.redis[0].user_arns["castle-marketdata"]] }] : [],
      )
    }
    gateways = {
      service_account = "castle-gateway"
      namespace       = "castle"
      statements = concat(
        [{ actions = ["secretsmanager:GetSecretValue"], resources = ["arn:${local.partition}:secretsmanager:${local.region}:${local.account}:secret:castle/${var.environment}/gateway/*"] }],
        local.f.redis ? [{ actions = ["elasticache:Connect"], resources = [module.redis[0].replication_group_arn, module.redis[0].user_arns["castle-gateway"]] }] : [],
      )
    }
  }
}

data "aws_iam_policy_document" "workload" {
  for_each = local.f.eks ? local.workload_policies : {}

  dynamic "statement" {
    for_each = each.value.statements
    content {
      actions   = statement.value.actions
      resources = statement.value.resources
    }
  }
}

module "eks" {
  count  = local.f.eks ? 1 : 0
  source = "../eks"

  name                  = local.name
  vpc_id                = module.network.vpc_id
  subnet_ids            = module.network.private_subnet_ids
  kms_key_arn           = module.kms.key_arns["secrets"]
  log_kms_key_arn       = module.kms.key_arns["logs"]
  admin_role_arns       = var.admin_role_arns
  node_groups           = local.s.node_groups
  public_endpoint_cidrs = []
  workloads = {
    for k, v in local.workload_policies : k => {
      namespace       = v.namespace
      service_account = v.service_account
      policy_json     = data.aws_iam_policy_document.workload[k].json
    }
  }
  log_retention_days = var.environment == "prod" ? 400 : 30
  tags               = local.tags
}

# Security groups allowed into the engine and the data stores: the EKS nodes, or the whole VPC when EKS is off.
locals {
  workload_sgs   = local.f.eks ? { eks_nodes = module.eks[0].cluster_security_group_id } : {}
  workload_cidrs = local.f.eks ? [] : [var.vpc_cidr]
}

# ---- Engine: one Auto Scaling group per shard, in a cluster placement group in the first AZ.
module "engine" {
  source   = "../engine"
  for_each = toset(local.s.engine_shards)

  name      = "${local.name}-engine-${each.key}"
  shard     = each.key
  vpc_id    = module.network.vpc_id
  subnet_id = module.network.private_subnet_ids[0]
  # The fencing referee in the next AZ: a failure domain apart from both engine nodes.
  referee = {
    subnet_id = module.network.private_subnet_ids[1]
  }
  ami_id           = var.engine_ami_id
  instance_type    = local.s.engine_instance_type
  threads_per_core = local.s.engine_threads_per_core
  instance_count   = local.s.engine_instances
  placement_group  = local.f.placement_groups
  force_delete     = var.throwaway
  kms_key_arn      = module.kms.key_arns["trading"]
  journal_volume = {
    size_gb = local.s.engine_journal_gb
    iops    = local.s.engine_journal_iops
    type    = local.s.engine_journal_type
  }
  ingress = {
    security_groups = local.workload_sgs
    cidr_blocks     = local.workload_cidrs
  }
  journal_bucket_arn = module.analytics.archive_bucket_arn
  log_group_name     = "/castle/${local.name}/engine"
  tags               = local.tags
}

# ---- Container registry for the castle image run by the EKS workloads.
resource "aws_ecr_repository" "castle" {
  name                 = "castle"
  image_tag_mutability = "IMMUTABLE"
  force_delete         = var.throwaway

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = module.kms.key_arns["secrets"]
  }

  tags = local.tags
}

resource "aws_ecr_lifecycle_policy" "castle" {
  repository = aws_ecr_repository.castle.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the last 200 release images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 200 }
      action       = { type = "expire" }
    }]
  })
}
