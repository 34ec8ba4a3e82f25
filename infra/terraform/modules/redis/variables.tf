variable "name" {
  description = "Replication group id, e.g. \"castle-prod-marketdata\"."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,39}$", var.name))
    error_message = "name must be 1-40 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "vpc_id" {
  description = "VPC of the cluster."
  type        = string
}

variable "subnet_ids" {
  description = "Data subnets (at least two AZs)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "Provide subnets in at least two availability zones."
  }
}

variable "allowed_security_groups" {
  description = "Security groups allowed to connect on 6379 (marketdata and gateway nodes), by a static name (e.g. { eks_nodes = sg-... }) so the rule set is known at plan time."
  type        = map(string)
  default     = {}
}

variable "engine_version" {
  description = "Redis OSS engine version (IAM authentication needs 7.0 or later)."
  type        = string
  default     = "7.1"
}

variable "node_type" {
  description = "Cache node type."
  type        = string
  default     = "cache.r7g.large"
}

variable "shards" {
  description = "Cluster mode shards (node groups). Market data streams are spread over hash slots by instrument."
  type        = number
  default     = 3

  validation {
    condition     = var.shards >= 1 && var.shards <= 500
    error_message = "shards must be 1-500."
  }
}

variable "replicas_per_shard" {
  description = "Replicas per shard. At least 1 enables automatic failover and multi-AZ."
  type        = number
  default     = 1

  validation {
    condition     = var.replicas_per_shard >= 0 && var.replicas_per_shard <= 5
    error_message = "replicas_per_shard must be 0-5."
  }
}

variable "kms_key_arn" {
  description = "KMS key (marketdata data class) for encryption at rest."
  type        = string
}

variable "iam_users" {
  description = "RBAC users authenticating with IAM (SigV4 tokens, no static password): user id => Redis ACL access string."
  type        = map(string)
  default = {
    "castle-marketdata" = "on ~* &* +@all -@dangerous"
    "castle-gateway"    = "on ~md:* &* -@all +@read +@connection +subscribe +xread"
  }

  validation {
    condition     = !contains(keys(var.iam_users), "default")
    error_message = "The default user is managed by the module (disabled)."
  }
}

variable "log_group_name" {
  description = "CloudWatch log group for the slow log and engine log (null disables delivery)."
  type        = string
  default     = null
}

variable "snapshot_retention_days" {
  description = "Daily snapshot retention (0 disables)."
  type        = number
  default     = 3
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
