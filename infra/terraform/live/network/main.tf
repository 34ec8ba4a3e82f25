# Runs in the network (infrastructure) account: the transit gateway every environment VPC attaches to,
# with the multicast domain carrying the MoldUDP64/ITCH market data feed, shared through RAM.
provider "aws" {
  region = var.region

  assume_role {
    role_arn     = "arn:aws:iam::${var.network_account_id}:role/castle-terraform"
    session_name = "castle-terraform-network"
  }

  default_tags {
    tags = {
      Project   = "castle"
      ManagedBy = "terraform"
      Root      = "network"
    }
  }
}

variable "region" {
  description = "Region of the transit gateway (the environments' home region)."
  type        = string
  default     = "eu-west-1"
}

variable "network_account_id" {
  description = "Network account id (live/org output account_ids.network)."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.network_account_id))
    error_message = "network_account_id must be a 12-digit account id."
  }
}

variable "organization_arn" {
  description = "Organization ARN (live/org output organization_arn): the transit gateway is shared with the whole organization."
  type        = string
}

module "transit_gateway" {
  source = "../../modules/transit-gateway"

  name                  = "castle-core"
  multicast_domain      = {}
  share_with_principals = [var.organization_arn]
}

# Environment VPC CIDRs, kept here so that overlaps are caught in one place (dev/test/prod main.tf use them).
locals {
  vpc_cidrs = {
    prod = "10.10.0.0/16"
    dev  = "10.20.0.0/20"
    test = "10.30.0.0/20"
  }
}

locals {
  vpc_ranges = {
    for env, cidr in local.vpc_cidrs : env => {
      first = sum([for i, o in split(".", cidrhost(cidr, 0)) : tonumber(o) * pow(256, 3 - i)])
      size  = pow(2, 32 - tonumber(split("/", cidr)[1]))
    }
  }
}

check "vpc_cidrs_do_not_overlap" {
  assert {
    condition = alltrue(flatten([
      for a, ra in local.vpc_ranges : [
        for b, rb in local.vpc_ranges : a == b || ra.first + ra.size <= rb.first || rb.first + rb.size <= ra.first
      ]
    ]))
    error_message = "Environment VPC CIDRs must not overlap: they are routed through one transit gateway."
  }
}

output "transit_gateway_id" {
  description = "Transit gateway id (workload roots find it by its Name tag castle-core)."
  value       = module.transit_gateway.id
}

output "multicast_domain_id" {
  description = "Market data multicast domain."
  value       = module.transit_gateway.multicast_domain_id
}

output "vpc_cidrs" {
  description = "Address plan of the environment VPCs."
  value       = local.vpc_cidrs
}
