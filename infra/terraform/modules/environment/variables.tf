variable "environment" {
  description = "Environment name: dev, test or prod. dev and test are the seed's shortened copies of prod."
  type        = string

  validation {
    condition     = contains(["dev", "test", "prod"], var.environment)
    error_message = "environment must be dev, test or prod."
  }
}

variable "availability_zones" {
  description = "Availability zones (2-4). The first one hosts the engine's cluster placement group."
  type        = list(string)
}

variable "vpc_cidr" {
  description = "VPC CIDR, unique across environments (they share the transit gateway)."
  type        = string
}

variable "domain_name" {
  description = "Public DNS zone of the environment."
  type        = string
}

variable "features" {
  description = <<-EOT
    Parts of the environment that can be switched off. Everything is on in real accounts except the paid
    Shield Advanced subscription outside prod. The offline test switches off what moto cannot emulate
    (see infra/README.md); nothing else should.
  EOT
  type = object({
    eks                 = optional(bool, true)
    redis               = optional(bool, true)
    aurora              = optional(bool, true)
    cloudfront          = optional(bool, true)
    shield_advanced     = optional(bool, false)
    health_checks       = optional(bool, true)
    api_gateway         = optional(bool, true)
    cognito             = optional(bool, true)
    redshift            = optional(bool, true)
    firehose            = optional(bool, true)
    interface_endpoints = optional(bool, true)
    flow_logs           = optional(bool, true)
    nat_gateways        = optional(bool, true)
    guardduty           = optional(bool, true)
    security_hub        = optional(bool, true)
    config              = optional(bool, true)
    access_analyzer     = optional(bool, true)
    xray                = optional(bool, true)
    waf_logging         = optional(bool, true)
    edge                = optional(bool, true)
    placement_groups    = optional(bool, true)
    ebs_default_key     = optional(bool, true)
    guardduty_features  = optional(bool, true)
    account_s3_block    = optional(bool, true)
  })
  default = {}
}

variable "sizing" {
  description = "Capacity of the environment. prod's defaults; dev/test pass smaller values."
  type = object({
    nat_gateway_mode        = optional(string, "per_az")
    engine_shards           = optional(list(string), ["a", "b"])
    engine_instance_type    = optional(string, "c7i.metal-24xl")
    engine_threads_per_core = optional(number)
    engine_instances        = optional(number, 2)
    engine_journal_gb       = optional(number, 500)
    engine_journal_iops     = optional(number, 32000)
    engine_journal_type     = optional(string, "io2")
    aurora_instance_class   = optional(string, "db.r7g.2xlarge")
    aurora_instances        = optional(number, 3)
    redis_node_type         = optional(string, "cache.r7g.xlarge")
    redis_shards            = optional(number, 3)
    redis_replicas          = optional(number, 2)
    kinesis_shards          = optional(number, 8)
    kinesis_on_demand       = optional(bool, false)
    redshift_base_rpu       = optional(number, 32)
    redshift_max_rpu        = optional(number, 256)
    node_groups = optional(map(object({
      instance_types = list(string)
      min_size       = number
      max_size       = number
      desired_size   = number
      disk_gb        = optional(number, 50)
      labels         = optional(map(string), {})
      taints = optional(list(object({
        key    = string
        value  = string
        effect = string
      })), [])
      })), {
      gateways = { instance_types = ["c7i.2xlarge"], min_size = 3, max_size = 12, desired_size = 3, labels = { "castle.io/pool" = "gateways" } }
      general  = { instance_types = ["m7i.xlarge"], min_size = 3, max_size = 9, desired_size = 3, labels = { "castle.io/pool" = "general" } }
    })
  })
  default = {}
}

variable "engine_ami_id" {
  description = "Engine AMI id (from infra/packer). null = newest castle-engine-* AMI of this account."
  type        = string
  default     = null
}

variable "transit_gateway" {
  description = "Shared transit gateway from live/network: id, CIDRs routed through it and the market data multicast domain. null = standalone VPC."
  type = object({
    id                  = string
    routed_cidrs        = list(string)
    multicast_domain_id = optional(string)
  })
  default = null
}

variable "config_delivery" {
  description = "Central AWS Config bucket (output of live/security)."
  type = object({
    bucket_name = string
    kms_key_arn = optional(string)
  })
}

variable "admin_role_arns" {
  description = "Roles with cluster-admin on EKS and administration of the KMS keys."
  type        = list(string)
  default     = []
}

variable "fix_client_cidrs" {
  description = "Institutional client networks allowed on the FIX and binary order-entry ports."
  type        = list(string)
  default     = []
}

variable "web_callback_urls" {
  description = "OAuth callback URLs of the retail web app (defaults to https://www.<domain_name>/callback)."
  type        = list(string)
  default     = null
}

variable "alarm_emails" {
  description = "E-mail subscribers of the alarm topic."
  type        = list(string)
  default     = []
}

variable "throwaway" {
  description = "true for disposable environments and tests: no deletion protection, no final snapshots, buckets destroyable, GOVERNANCE instead of COMPLIANCE object lock on the archive. Never true in prod."
  type        = bool
  default     = false

  validation {
    condition     = !(var.throwaway && var.environment == "prod")
    error_message = "prod is never throwaway."
  }
}

variable "create_autoscaling_service_linked_role" {
  description = "Create the Auto Scaling service-linked role (false if the account already has one)."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Extra tags (Environment, Project and ManagedBy are always set)."
  type        = map(string)
  default     = {}
}
