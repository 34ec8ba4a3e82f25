data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_root = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"
  admins       = length(var.admin_role_arns) > 0 ? var.admin_role_arns : [local.account_root]
}

data "aws_iam_policy_document" "key" {
  for_each = var.data_classes

  source_policy_documents = each.value.policy_documents

  # Keeps the key manageable through IAM in this account (AWS default key policy statement).
  statement {
    sid       = "EnableIamPolicies"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
  }

  statement {
    sid = "KeyAdministrators"
    actions = [
      "kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
      "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource",
      "kms:UntagResource", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
    ]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = local.admins
    }
  }

  dynamic "statement" {
    for_each = length(each.value.service_principals) > 0 ? [each.value.service_principals] : []
    content {
      sid       = "AllowServicesOfThisAccount"
      actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
      resources = ["*"]
      principals {
        type        = "Service"
        identifiers = statement.value
      }
      # Confused-deputy protection: the service may use the key only for resources of this account.
      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [data.aws_caller_identity.current.account_id]
      }
    }
  }

  dynamic "statement" {
    for_each = length(each.value.user_arns) > 0 ? [each.value.user_arns] : []
    content {
      sid       = "AllowKeyUsers"
      actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
      resources = ["*"]
      principals {
        type        = "AWS"
        identifiers = statement.value
      }
    }
  }

  dynamic "statement" {
    for_each = length(each.value.user_arns) > 0 ? [each.value.user_arns] : []
    content {
      sid       = "AllowGrantsForAwsResources"
      actions   = ["kms:CreateGrant"]
      resources = ["*"]
      principals {
        type        = "AWS"
        identifiers = statement.value
      }
      condition {
        test     = "Bool"
        variable = "kms:GrantIsForAWSResource"
        values   = ["true"]
      }
    }
  }

  # CloudWatch Logs does not send aws:SourceAccount for key use; it binds the key to log groups
  # of this account through the encryption context instead (AWS docs: encrypt-log-data-kms).
  dynamic "statement" {
    for_each = contains(each.value.service_principals, "logs.${data.aws_region.current.name}.amazonaws.com") ? [1] : []
    content {
      sid       = "AllowCloudWatchLogsOfThisAccount"
      actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
      resources = ["*"]
      principals {
        type        = "Service"
        identifiers = ["logs.${data.aws_region.current.name}.amazonaws.com"]
      }
      condition {
        test     = "ArnLike"
        variable = "kms:EncryptionContext:aws:logs:arn"
        values   = ["arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:log-group:*"]
      }
    }
  }
}

resource "aws_kms_key" "this" {
  for_each = var.data_classes

  description             = "${var.name_prefix} ${each.key}: ${each.value.description}"
  key_usage               = "ENCRYPT_DECRYPT"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = each.value.deletion_window_in_days
  policy                  = data.aws_iam_policy_document.key[each.key].json

  tags = merge(var.tags, { Name = "${var.name_prefix}-${each.key}", DataClass = each.key })
}

resource "aws_kms_alias" "this" {
  for_each = var.data_classes

  name          = "alias/${var.name_prefix}/${each.key}"
  target_key_id = aws_kms_key.this[each.key].key_id
}
