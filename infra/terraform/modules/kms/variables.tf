variable "name_prefix" {
  description = "Prefix for key aliases, e.g. \"castle-prod\". Aliases become alias/<name_prefix>/<data class>."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,40}$", var.name_prefix))
    error_message = "name_prefix must be 2-41 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "data_classes" {
  description = <<-EOT
    One customer managed key per data class. Keys are separated so that a grant on one class
    (say, market data read by analysts) never opens another (say, the settlement ledger).
    service_principals are AWS service principals (e.g. "logs.eu-west-1.amazonaws.com") allowed to use the key
    on behalf of this account only. policy_documents are extra key policy statements (JSON) for cross-account
    use such as an organization trail. user_arns are IAM principals without identity policies that must use the
    key, chiefly the Auto Scaling service-linked role that launches instances with encrypted EBS volumes.
  EOT
  type = map(object({
    description             = string
    service_principals      = optional(list(string), [])
    deletion_window_in_days = optional(number, 30)
    policy_documents        = optional(list(string), [])
    user_arns               = optional(list(string), [])
  }))

  validation {
    condition     = length(var.data_classes) > 0
    error_message = "At least one data class is required."
  }

  validation {
    condition     = alltrue([for k, v in var.data_classes : can(regex("^[a-z][a-z0-9-]+$", k))])
    error_message = "Data class names must be lowercase kebab-case."
  }

  validation {
    condition     = alltrue([for v in values(var.data_classes) : v.deletion_window_in_days >= 7 && v.deletion_window_in_days <= 30])
    error_message = "deletion_window_in_days must be between 7 and 30."
  }
}

variable "admin_role_arns" {
  description = "IAM role ARNs allowed to administer (but not use) the keys. Empty means the account root, i.e. IAM policies decide."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags applied to every key."
  type        = map(string)
  default     = {}
}
