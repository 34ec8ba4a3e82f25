variable "name" {
  description = "Name of the VPC and prefix for its resources, e.g. \"castle-prod\"."
  type        = string
}

variable "cidr_block" {
  description = "IPv4 CIDR of the VPC. Must not overlap other Castle VPCs: they are joined by the transit gateway."
  type        = string

  validation {
    condition     = can(cidrhost(var.cidr_block, 0)) && tonumber(split("/", var.cidr_block)[1]) <= 22
    error_message = "cidr_block must be a valid IPv4 CIDR of size /22 or larger."
  }
}

variable "availability_zones" {
  description = "Availability zones to spread subnets over (2-4). Prod uses three so that Aurora, Redis and EKS survive an AZ loss."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) >= 2 && length(var.availability_zones) <= 4
    error_message = "Use between 2 and 4 availability zones."
  }
}

variable "subnet_newbits" {
  description = "Bits added to the VPC prefix for each subnet. The VPC is cut into 16 equal blocks at the default: blocks 0-3 public, 4-7 private (workloads), 8-11 data (no internet route), 12-15 reserved."
  type        = number
  default     = 4

  validation {
    condition     = var.subnet_newbits >= 4 && var.subnet_newbits <= 8
    error_message = "subnet_newbits must be between 4 and 8 (the layout needs at least 12 subnets)."
  }
}

variable "nat_gateway_mode" {
  description = "\"per_az\" (one NAT gateway per AZ, prod), \"single\" (one shared, dev/test) or \"none\"."
  type        = string
  default     = "per_az"

  validation {
    condition     = contains(["per_az", "single", "none"], var.nat_gateway_mode)
    error_message = "nat_gateway_mode must be per_az, single or none."
  }
}

variable "interface_endpoints" {
  description = "AWS services reached through interface VPC endpoints (short names such as \"kinesis-streams\"), so that engine and EKS traffic to AWS APIs never leaves the VPC."
  type        = list(string)
  default     = ["sts", "kms", "logs", "monitoring", "kinesis-streams", "secretsmanager", "ssm", "ssmmessages", "ec2messages", "ecr.api", "ecr.dkr", "xray"]
}

variable "gateway_endpoints" {
  description = "Services reached through gateway endpoints (free): s3 and dynamodb."
  type        = list(string)
  default     = ["s3", "dynamodb"]

  validation {
    condition     = alltrue([for s in var.gateway_endpoints : contains(["s3", "dynamodb"], s)])
    error_message = "Only s3 and dynamodb have gateway endpoints."
  }
}

variable "flow_logs" {
  description = "VPC flow logs to CloudWatch Logs (encrypted with kms_key_arn, kept retention_days). null disables them (tests only)."
  type = object({
    kms_key_arn    = string
    retention_days = optional(number, 90)
  })
  default = null
}

variable "transit_gateway" {
  description = "Attach the private subnets to this (possibly RAM-shared) transit gateway and route routed_cidrs through it. null = no attachment."
  type = object({
    id           = string
    routed_cidrs = list(string)
  })
  default = null
}

variable "eks_cluster_name" {
  description = "EKS cluster whose load balancers may use these subnets (adds the kubernetes.io subnet tags). null = none."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

variable "multicast_domain_id" {
  description = "Transit gateway multicast domain (market data feed) to associate the private subnets with. Needs transit_gateway. null = none."
  type        = string
  default     = null

  validation {
    condition     = var.multicast_domain_id == null || var.transit_gateway != null
    error_message = "multicast_domain_id needs a transit_gateway attachment."
  }
}
