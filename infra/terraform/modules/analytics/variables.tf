variable "name_prefix" {
  description = "Prefix for names, e.g. \"castle-prod\"."
  type        = string
}

variable "archive_bucket_name" {
  description = "Name of the event archive bucket (globally unique)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key (archive data class) for the archive, Athena results, Glue catalog and Redshift."
  type        = string
}

variable "archive_retention" {
  description = <<-EOT
    Archive lifecycle and retention. The sequenced event stream is the venue's audit trail: object lock keeps each
    object immutable for lock_days (COMPLIANCE in prod, GOVERNANCE elsewhere so test data can be cleaned);
    objects move to Glacier Instant Retrieval, then Deep Archive, and expire after expire_days.
  EOT
  type = object({
    lock_mode         = optional(string, "COMPLIANCE")
    lock_days         = optional(number, 2555)
    glacier_ir_days   = optional(number, 30)
    deep_archive_days = optional(number, 180)
    expire_days       = optional(number, 3650)
  })
  default = {}

  validation {
    condition     = var.archive_retention.glacier_ir_days < var.archive_retention.deep_archive_days && var.archive_retention.deep_archive_days < var.archive_retention.expire_days
    error_message = "Transitions must be ordered: glacier_ir_days < deep_archive_days < expire_days."
  }

  validation {
    condition     = var.archive_retention.expire_days >= var.archive_retention.lock_days
    error_message = "Objects cannot expire before their object lock ends."
  }
}

variable "archive_prefix" {
  description = "Key prefix of archived events (must match modules/streaming)."
  type        = string
  default     = "events"
}

variable "stream_names" {
  description = "Short names of archived streams (values of the stream= partition)."
  type        = list(string)
  default     = ["events"]
}

variable "access_log_bucket" {
  description = "Bucket for S3 server access logs (null disables)."
  type        = string
  default     = null
}

variable "redshift" {
  description = "Redshift Serverless for analytics over the archive (Spectrum on the Glue table). null disables it."
  type = object({
    base_capacity_rpu  = optional(number, 8)
    max_capacity_rpu   = optional(number, 64)
    subnet_ids         = list(string)
    security_group_ids = list(string)
  })
  default = null
}

variable "force_destroy" {
  description = "Allow destroying non-empty buckets (tests only)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
