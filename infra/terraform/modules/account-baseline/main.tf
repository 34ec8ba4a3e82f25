data "aws_partition" "current" {}

# ---- Account-wide guard rails that no module can forget.
resource "aws_s3_account_public_access_block" "this" {
  count = var.features.account_public_access_block ? 1 : 0

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_ebs_encryption_by_default" "this" {
  enabled = true
}

resource "aws_ebs_default_kms_key" "this" {
  count = var.features.ebs_default_key ? 1 : 0

  key_arn = var.ebs_kms_key_arn
}

resource "aws_accessanalyzer_analyzer" "this" {
  count = var.features.access_analyzer ? 1 : 0

  analyzer_name = "${var.name_prefix}-account"
  type          = "ACCOUNT"
  tags          = var.tags
}

# ---- GuardDuty. The security account (delegated admin) enrols this detector as a member; creating it here keeps
# its protection features in code. If the organization auto-enabled the account first, import the detector.
resource "aws_guardduty_detector" "this" {
  count = var.features.guardduty ? 1 : 0

  enable                       = true
  finding_publishing_frequency = "FIFTEEN_MINUTES"
  tags                         = var.tags
}

resource "aws_guardduty_detector_feature" "this" {
  for_each = var.features.guardduty && var.features.guardduty_features ? toset(["S3_DATA_EVENTS", "EKS_AUDIT_LOGS", "EBS_MALWARE_PROTECTION", "RDS_LOGIN_EVENTS", "LAMBDA_NETWORK_LOGS"]) : toset([])

  detector_id = aws_guardduty_detector.this[0].id
  name        = each.value
  status      = "ENABLED"
}

resource "aws_guardduty_detector_feature" "runtime" {
  count = var.features.guardduty && var.features.guardduty_features ? 1 : 0

  detector_id = aws_guardduty_detector.this[0].id
  name        = "RUNTIME_MONITORING"
  status      = "ENABLED"

  # The agents on EKS (add-on) and on the engine instances (SSM) are managed by GuardDuty.
  additional_configuration {
    name   = "EKS_ADDON_MANAGEMENT"
    status = "ENABLED"
  }
  additional_configuration {
    name   = "EC2_AGENT_MANAGEMENT"
    status = "ENABLED"
  }
}

# ---- Security Hub with the AWS Foundational Security Best Practices standard.
resource "aws_securityhub_account" "this" {
  count = var.features.security_hub ? 1 : 0

  enable_default_standards  = false
  control_finding_generator = "SECURITY_CONTROL"
  auto_enable_controls      = true
}

resource "aws_securityhub_standards_subscription" "fsbp" {
  count = var.features.security_hub ? 1 : 0

  standards_arn = "arn:${data.aws_partition.current.partition}:securityhub:${data.aws_region.current.name}::standards/aws-foundational-security-best-practices/v/1.0.0"
  depends_on    = [aws_securityhub_account.this]
}

data "aws_region" "current" {}

# ---- AWS Config: record everything, deliver to the central bucket, evaluate managed rules.
data "aws_iam_policy_document" "config_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["config.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "config" {
  count = var.features.config ? 1 : 0

  name               = "${var.name_prefix}-aws-config"
  assume_role_policy = data.aws_iam_policy_document.config_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "config" {
  count = var.features.config ? 1 : 0

  role       = aws_iam_role.config[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWS_ConfigRole"
}

resource "aws_config_configuration_recorder" "this" {
  count = var.features.config ? 1 : 0

  name     = "default"
  role_arn = aws_iam_role.config[0].arn

  recording_group {
    all_supported                 = true
    include_global_resource_types = data.aws_region.current.name == "us-east-1"
  }
}

resource "aws_config_delivery_channel" "this" {
  count = var.features.config ? 1 : 0

  name           = "default"
  s3_bucket_name = var.config_delivery.bucket_name
  s3_key_prefix  = var.name_prefix
  s3_kms_key_arn = var.config_delivery.kms_key_arn

  snapshot_delivery_properties {
    delivery_frequency = "TwentyFour_Hours"
  }

  depends_on = [aws_config_configuration_recorder.this]
}

resource "aws_config_configuration_recorder_status" "this" {
  count = var.features.config ? 1 : 0

  name       = aws_config_configuration_recorder.this[0].name
  is_enabled = true
  depends_on = [aws_config_delivery_channel.this]
}

resource "aws_config_config_rule" "managed" {
  for_each = var.features.config ? var.config_rules : {}

  name = each.key

  source {
    owner             = "AWS"
    source_identifier = each.value
  }

  tags       = var.tags
  depends_on = [aws_config_configuration_recorder.this]
}

resource "aws_iam_service_linked_role" "autoscaling" {
  count = var.create_autoscaling_service_linked_role ? 1 : 0

  aws_service_name = "autoscaling.amazonaws.com"
  description      = "Default Service-Linked Role enables access to AWS Services and Resources used or managed by Auto Scaling"
}

data "aws_caller_identity" "current" {}
