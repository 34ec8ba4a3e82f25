variable "name" {
  description = "User pool name, e.g. \"castle-prod-retail\"."
  type        = string
}

variable "domain_prefix" {
  description = "Prefix of the Cognito hosted UI domain (<prefix>.auth.<region>.amazoncognito.com)."
  type        = string
}

variable "callback_urls" {
  description = "OAuth callback URLs of the retail web app."
  type        = list(string)

  validation {
    condition     = alltrue([for u in var.callback_urls : startswith(u, "https://")])
    error_message = "Callback URLs must use https."
  }
}

variable "logout_urls" {
  description = "Sign-out URLs of the retail web app."
  type        = list(string)
  default     = []
}

variable "mfa" {
  description = "MFA: \"ON\" (required, prod) or \"OPTIONAL\"."
  type        = string
  default     = "ON"

  validation {
    condition     = contains(["ON", "OPTIONAL"], var.mfa)
    error_message = "mfa must be ON or OPTIONAL: a trading account without MFA is not an option."
  }
}

variable "deletion_protection" {
  description = "Protect the pool (and every retail login) from deletion."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
