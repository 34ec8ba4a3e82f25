variable "name_prefix" {
  description = "Prefix for names, e.g. \"castle-security\"."
  type        = string
}

variable "organization_id" {
  description = "AWS Organizations id (o-...), used to scope bucket policies to the organization."
  type        = string

  validation {
    condition     = can(regex("^o-[a-z0-9]{10,32}$", var.organization_id))
    error_message = "organization_id must look like o-xxxxxxxxxx."
  }
}

variable "trail_retention" {
  description = "Object lock of the CloudTrail bucket: COMPLIANCE mode, so not even root can delete a log before days have passed."
  type = object({
    mode        = optional(string, "COMPLIANCE")
    days        = optional(number, 2555)
    glacier_day = optional(number, 90)
  })
  default = {}
}

variable "config_rules" {
  description = "Organization-wide AWS managed Config rules deployed from the delegated admin: name => source identifier."
  type        = map(string)
  default = {
    "org-cloudtrail-enabled"        = "CLOUD_TRAIL_ENABLED"
    "org-guardduty-enabled"         = "GUARDDUTY_ENABLED_CENTRALIZED"
    "org-s3-public-read-prohibited" = "S3_BUCKET_PUBLIC_READ_PROHIBITED"
    "org-ec2-imdsv2"                = "EC2_IMDSV2_CHECK"
    "org-root-mfa"                  = "ROOT_ACCOUNT_HARDWARE_MFA_ENABLED"
  }
}

variable "force_destroy" {
  description = "Allow destroying non-empty buckets (tests only; object lock still protects objects)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
