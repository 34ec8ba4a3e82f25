data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

data "aws_caller_identity" "management" {
  provider = aws.management
}

locals {
  partition  = data.aws_partition.current.partition
  trail_name = "${var.name_prefix}-organization"
  trail_arn  = "arn:${local.partition}:cloudtrail:${data.aws_region.current.name}:${data.aws_caller_identity.management.account_id}:trail/${local.trail_name}"
}

# ---- KMS keys per data class of the security account.
module "kms" {
  source = "../kms"

  name_prefix = var.name_prefix
  data_classes = {
    audit = {
      description      = "CloudTrail organization trail"
      policy_documents = [data.aws_iam_policy_document.trail_key.json]
    }
    config = {
      description        = "AWS Config snapshots and history of every account"
      service_principals = ["config.amazonaws.com"]
    }
    ebs = {
      description = "EBS volumes of the security account (default EBS encryption key)"
    }
    findings = {
      description        = "GuardDuty and Security Hub finding exports"
      service_principals = ["guardduty.amazonaws.com", "logs.${data.aws_region.current.name}.amazonaws.com"]
    }
  }
  tags = var.tags
}

# CloudTrail encrypts with the audit key on behalf of the management account's trail.
data "aws_iam_policy_document" "trail_key" {
  statement {
    sid       = "CloudTrailOrganizationTrail"
    actions   = ["kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudtrail.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceArn"
      values   = [local.trail_arn]
    }
  }

  statement {
    sid       = "AuditorsDecryptLogs"
    actions   = ["kms:Decrypt", "kms:ReEncryptFrom"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:aws:cloudtrail:arn"
      values   = ["arn:${local.partition}:cloudtrail:*:${data.aws_caller_identity.management.account_id}:trail/*"]
    }
  }
}

# ---- CloudTrail bucket: encrypted, versioned, object-locked, never public.
module "trail_bucket" {
  source = "../s3-bucket"

  name        = "${var.name_prefix}-cloudtrail-${data.aws_caller_identity.current.account_id}"
  kms_key_arn = module.kms.key_arns["audit"]
  object_lock = {
    mode = var.trail_retention.mode
    days = var.trail_retention.days
  }
  lifecycle_rules = [{
    id          = "trail-to-glacier"
    transitions = [{ days = var.trail_retention.glacier_day, storage_class = "GLACIER" }]
  }]
  policy_documents = [data.aws_iam_policy_document.trail_bucket.json]
  force_destroy    = var.force_destroy
  tags             = var.tags
}

data "aws_iam_policy_document" "trail_bucket" {
  statement {
    sid       = "CloudTrailAclCheck"
    actions   = ["s3:GetBucketAcl"]
    resources = ["arn:${local.partition}:s3:::${var.name_prefix}-cloudtrail-${data.aws_caller_identity.current.account_id}"]
    principals {
      type        = "Service"
      identifiers = ["cloudtrail.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceArn"
      values   = [local.trail_arn]
    }
  }
  statement {
    sid     = "CloudTrailWrite"
    actions = ["s3:PutObject"]
    resources = [
      "arn:${local.partition}:s3:::${var.name_prefix}-cloudtrail-${data.aws_caller_identity.current.account_id}/AWSLogs/${data.aws_caller_identity.management.account_id}/*",
      "arn:${local.partition}:s3:::${var.name_prefix}-cloudtrail-${data.aws_caller_identity.current.account_id}/AWSLogs/${var.organization_id}/*",
    ]
    principals {
      type        = "Service"
      identifiers = ["cloudtrail.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceArn"
      values   = [local.trail_arn]
    }
  }
}

resource "aws_cloudtrail" "organization" {
  provider = aws.management

  name                          = local.trail_name
  s3_bucket_name                = module.trail_bucket.id
  kms_key_id                    = module.kms.key_arns["audit"]
  is_organization_trail         = true
  is_multi_region_trail         = true
  include_global_service_events = true
  enable_log_file_validation    = true

  insight_selector {
    insight_type = "ApiCallRateInsight"
  }

  tags = var.tags

  depends_on = [module.trail_bucket]
}

# ---- Central AWS Config bucket (every account's delivery channel writes here).
module "config_bucket" {
  source = "../s3-bucket"

  name        = "${var.name_prefix}-config-${data.aws_caller_identity.current.account_id}"
  kms_key_arn = module.kms.key_arns["config"]
  lifecycle_rules = [{
    id          = "config-to-glacier"
    transitions = [{ days = 90, storage_class = "GLACIER" }]
  }]
  policy_documents = [data.aws_iam_policy_document.config_bucket.json]
  force_destroy    = var.force_destroy
  tags             = var.tags
}

data "aws_iam_policy_document" "config_bucket" {
  statement {
    sid       = "ConfigAclCheck"
    actions   = ["s3:GetBucketAcl", "s3:ListBucket"]
    resources = ["arn:${local.partition}:s3:::${var.name_prefix}-config-${data.aws_caller_identity.current.account_id}"]
    principals {
      type        = "Service"
      identifiers = ["config.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceOrgID"
      values   = [var.organization_id]
    }
  }
  statement {
    sid       = "ConfigWrite"
    actions   = ["s3:PutObject"]
    resources = ["arn:${local.partition}:s3:::${var.name_prefix}-config-${data.aws_caller_identity.current.account_id}/*"]
    principals {
      type        = "Service"
      identifiers = ["config.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceOrgID"
      values   = [var.organization_id]
    }
  }
}

# ---- GuardDuty: this account is the delegated admin; every current and future account is enrolled.
resource "aws_guardduty_detector" "this" {
  enable                       = true
  finding_publishing_frequency = "FIFTEEN_MINUTES"
  tags                         = var.tags
}

resource "aws_guardduty_organization_configuration" "this" {
  detector_id                      = aws_guardduty_detector.this.id
  auto_enable_organization_members = "ALL"
}

resource "aws_guardduty_organization_configuration_feature" "this" {
  for_each = toset(["S3_DATA_EVENTS", "EKS_AUDIT_LOGS", "EBS_MALWARE_PROTECTION", "RDS_LOGIN_EVENTS", "RUNTIME_MONITORING"])

  detector_id = aws_guardduty_detector.this.id
  name        = each.value
  auto_enable = "ALL"
}

# ---- Security Hub: aggregated in this account and region, auto-enabled for members.
resource "aws_securityhub_account" "this" {
  enable_default_standards  = false
  control_finding_generator = "SECURITY_CONTROL"
}

resource "aws_securityhub_organization_configuration" "this" {
  auto_enable           = true
  auto_enable_standards = "DEFAULT"
  depends_on            = [aws_securityhub_account.this]
}

resource "aws_securityhub_standards_subscription" "this" {
  for_each = {
    fsbp = "arn:${local.partition}:securityhub:${data.aws_region.current.name}::standards/aws-foundational-security-best-practices/v/1.0.0"
    cis  = "arn:${local.partition}:securityhub:${data.aws_region.current.name}::standards/cis-aws-foundations-benchmark/v/3.0.0"
  }

  standards_arn = each.value
  depends_on    = [aws_securityhub_account.this]
}

resource "aws_securityhub_finding_aggregator" "this" {
  linking_mode = "ALL_REGIONS"
  depends_on   = [aws_securityhub_account.this]
}

# ---- AWS Config: organization aggregator and organization-wide rules.
data "aws_iam_policy_document" "config_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["config.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "aggregator" {
  name               = "${var.name_prefix}-config-aggregator"
  assume_role_policy = data.aws_iam_policy_document.config_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "aggregator" {
  role       = aws_iam_role.aggregator.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSConfigRoleForOrganizations"
}

resource "aws_config_configuration_aggregator" "organization" {
  name = "${var.name_prefix}-organization"

  organization_aggregation_source {
    all_regions = true
    role_arn    = aws_iam_role.aggregator.arn
  }

  tags       = var.tags
  depends_on = [aws_iam_role_policy_attachment.aggregator]
}

resource "aws_config_organization_managed_rule" "this" {
  for_each = var.config_rules

  name            = each.key
  rule_identifier = each.value
}
