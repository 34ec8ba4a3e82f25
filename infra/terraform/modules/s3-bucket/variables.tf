variable "name" {
  description = "Globally unique bucket name."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.name)) && !can(regex("\\.\\.", var.name))
    error_message = "Bucket name must be 3-63 lowercase letters, digits, dots or dashes."
  }
}

variable "kms_key_arn" {
  description = "KMS key for SSE-KMS (with S3 bucket keys). null selects SSE-S3 (AES-256), needed only for writers that cannot use a CMK such as ELB access logs. Encryption itself cannot be turned off."
  type        = string
  default     = null
}

variable "object_lock" {
  description = "Default object lock retention. null disables object lock. COMPLIANCE cannot be shortened by anyone, including root; GOVERNANCE can be bypassed with s3:BypassGovernanceRetention."
  type = object({
    mode = string
    days = number
  })
  default = null

  validation {
    condition     = var.object_lock == null || contains(["GOVERNANCE", "COMPLIANCE"], try(var.object_lock.mode, ""))
    error_message = "object_lock.mode must be GOVERNANCE or COMPLIANCE."
  }

  validation {
    condition     = var.object_lock == null || try(var.object_lock.days, 0) >= 1
    error_message = "object_lock.days must be at least 1."
  }
}

variable "lifecycle_rules" {
  description = "Lifecycle rules. Each rule applies to a prefix (\"\" = whole bucket); transitions move current versions to colder storage classes."
  type = list(object({
    id     = string
    prefix = optional(string, "")
    transitions = optional(list(object({
      days          = number
      storage_class = string
    })), [])
    expiration_days            = optional(number)
    noncurrent_expiration_days = optional(number)
  }))
  default = []

  validation {
    condition = alltrue(flatten([
      for r in var.lifecycle_rules : [
        for t in r.transitions : contains(["STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"], t.storage_class)
      ]
    ]))
    error_message = "Unknown storage class in lifecycle_rules."
  }
}

variable "policy_documents" {
  description = "Additional bucket policy documents (JSON) merged with the module's TLS-only policy."
  type        = list(string)
  default     = []
}

variable "access_log_bucket" {
  description = "Bucket receiving server access logs (null disables). Logs go under <access_log_prefix>."
  type        = string
  default     = null
}

variable "access_log_prefix" {
  description = "Key prefix for server access logs."
  type        = string
  default     = "s3-access/"
}

variable "force_destroy" {
  description = "Allow terraform destroy to delete a non-empty bucket. Keep false outside tests."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for the bucket."
  type        = map(string)
  default     = {}
}
