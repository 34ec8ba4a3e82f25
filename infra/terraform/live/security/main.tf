# Runs in the security (audit/log archive) account, the delegated administrator of GuardDuty, Security Hub
# and Config; the organization trail itself must be created from the management account.
provider "aws" {
  region = var.region

  assume_role {
    role_arn     = "arn:aws:iam::${var.security_account_id}:role/${var.pipeline_role_name}"
    session_name = "castle-terraform-security"
  }

  default_tags {
    tags = {
      Project   = "castle"
      ManagedBy = "terraform"
      Root      = "security"
    }
  }
}

provider "aws" {
  alias  = "management"
  region = var.region

  default_tags {
    tags = {
      Project   = "castle"
      ManagedBy = "terraform"
      Root      = "security"
    }
  }
}

variable "region" {
  description = "Home region (Security Hub aggregation region)."
  type        = string
  default     = "eu-west-1"
}

variable "security_account_id" {
  description = "Security account id (live/org output account_ids.security)."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.security_account_id))
    error_message = "security_account_id must be a 12-digit account id."
  }
}

variable "organization_id" {
  description = "Organization id (live/org output organization_id)."
  type        = string
}

variable "pipeline_role_name" {
  description = "Role the pipeline assumes in member accounts."
  type        = string
  default     = "castle-terraform"
}

module "security" {
  source = "../../modules/security-org"
  providers = {
    aws            = aws
    aws.management = aws.management
  }

  name_prefix     = "castle-security"
  organization_id = var.organization_id
}

# The security account's own recorder, rules and guard rails. GuardDuty and Security Hub are enabled by the
# delegated-admin configuration above, so the baseline does not create them a second time.
module "baseline" {
  source = "../../modules/account-baseline"

  name_prefix = "castle-security"
  config_delivery = {
    bucket_name = module.security.config_bucket
    kms_key_arn = module.security.config_kms_key_arn
  }
  ebs_kms_key_arn = module.security.ebs_kms_key_arn
  features = {
    guardduty    = false
    security_hub = false
  }
  create_autoscaling_service_linked_role = false
}

output "config_bucket" {
  description = "Central Config bucket (workload roots: security_account_id derives the same name)."
  value       = module.security.config_bucket
}

output "config_kms_key_arn" {
  description = "Key of the Config bucket (workload roots: config_kms_key_arn)."
  value       = module.security.config_kms_key_arn
}

output "trail_bucket" {
  description = "Object-locked CloudTrail bucket."
  value       = module.security.trail_bucket
}

output "kms_key_arns" {
  description = "Security account keys per data class."
  value       = module.security.kms_key_arns
}
