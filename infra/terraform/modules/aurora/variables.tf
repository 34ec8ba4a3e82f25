variable "name" {
  description = "Cluster identifier, e.g. \"castle-prod-ledger\"."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,62}$", var.name))
    error_message = "name must be a valid RDS identifier (lowercase, starts with a letter)."
  }
}

variable "vpc_id" {
  description = "VPC of the cluster."
  type        = string
}

variable "subnet_ids" {
  description = "Data subnets in at least two AZs."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "Aurora needs subnets in at least two availability zones."
  }
}

variable "allowed_security_groups" {
  description = "Security groups (settlement pods' nodes) allowed to connect on 5432, by a static name (e.g. { eks_nodes = sg-... }) so the rule set is known at plan time."
  type        = map(string)
  default     = {}
}

variable "engine_version" {
  description = "Aurora PostgreSQL version."
  type        = string
  default     = "16.4"
}

variable "instance_class" {
  description = "Instance class of writer and readers."
  type        = string
  default     = "db.r7g.large"
}

variable "instance_count" {
  description = "Writer plus readers. 2 or more makes the cluster multi-AZ (readers are failover targets in other AZs)."
  type        = number
  default     = 2

  validation {
    condition     = var.instance_count >= 1 && var.instance_count <= 15
    error_message = "instance_count must be 1-15."
  }
}

variable "kms_key_arn" {
  description = "KMS key (ledger data class) for storage, Performance Insights and the managed master secret."
  type        = string
}

variable "database_name" {
  description = "Initial database."
  type        = string
  default     = "castle"
}

variable "master_username" {
  description = "Master user. Its password is generated and rotated by RDS in Secrets Manager; it never appears in state."
  type        = string
  default     = "castle_admin"
}

variable "backup_retention_days" {
  description = "Automated backup retention."
  type        = number
  default     = 14

  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be 1-35."
  }
}

variable "deletion_protection" {
  description = "Protect the cluster from deletion (false only in throwaway test environments)."
  type        = bool
  default     = true
}

variable "skip_final_snapshot" {
  description = "Skip the final snapshot on destroy (test environments only)."
  type        = bool
  default     = false
}

variable "monitoring_role_arn" {
  description = "Role for Enhanced Monitoring (null disables it)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
