# Runs in the organization management account with its own credentials (no role to assume: this root
# creates the accounts the other roots assume into).
provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project   = "castle"
      ManagedBy = "terraform"
      Root      = "org"
    }
  }
}

variable "region" {
  description = "Home region of the organization's regional resources."
  type        = string
  default     = "eu-west-1"
}

variable "account_email_domain" {
  description = "Mail domain for the member accounts' root addresses (aws-<account>@<domain>, a distribution list)."
  type        = string
  default     = "castle-venue.net"
}

variable "allowed_regions" {
  description = "Regions the region allow-list SCP permits."
  type        = list(string)
  default     = ["eu-west-1", "eu-central-1", "us-east-1"]
}

module "org" {
  source = "../../modules/org"

  accounts = {
    security = { name = "castle-security", email = "aws-security@${var.account_email_domain}", ou = "security" }
    network  = { name = "castle-network", email = "aws-network@${var.account_email_domain}", ou = "infrastructure" }
    prod     = { name = "castle-prod", email = "aws-prod@${var.account_email_domain}", ou = "workloads_prod" }
    test     = { name = "castle-test", email = "aws-test@${var.account_email_domain}", ou = "workloads_sdlc" }
    dev      = { name = "castle-dev", email = "aws-dev@${var.account_email_domain}", ou = "workloads_sdlc" }
  }
  allowed_regions = var.allowed_regions
}

output "organization_id" {
  description = "Organization id (input of live/security)."
  value       = module.org.organization_id
}

output "organization_arn" {
  description = "Organization ARN (input of live/network for the RAM share)."
  value       = module.org.organization_arn
}

output "account_ids" {
  description = "Account ids: fill the other roots' terraform.tfvars from these."
  value       = module.org.account_ids
}

output "ou_ids" {
  description = "Organizational unit ids."
  value       = module.org.ou_ids
}
