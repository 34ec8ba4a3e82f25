variable "name" {
  description = "API name, e.g. \"castle-prod-partner-api\"."
  type        = string
}

variable "backend_base_url" {
  description = "HTTPS base URL the API proxies to (the REST gateway behind the ALB), e.g. https://api.castle.example/api."
  type        = string

  validation {
    condition     = startswith(var.backend_base_url, "https://")
    error_message = "backend_base_url must be https."
  }
}

variable "cognito_user_pool_arn" {
  description = "User pool whose tokens authorize /v1/account/* (retail logins)."
  type        = string
}

variable "usage_plans" {
  description = "Usage plans for API-key clients of /v1/market/* (partners, data vendors): name => throttle and quota."
  type = map(object({
    rate_limit    = number
    burst_limit   = number
    quota_per_day = number
  }))
  default = {
    basic = { rate_limit = 10, burst_limit = 20, quota_per_day = 100000 }
    pro   = { rate_limit = 100, burst_limit = 200, quota_per_day = 5000000 }
  }
}

variable "web_acl_arn" {
  description = "Regional WAF web ACL to associate with the stage (used when associate_web_acl is true)."
  type        = string
  default     = null
}

variable "associate_web_acl" {
  description = "Associate web_acl_arn with the stage. A separate flag because the ARN is only known after apply."
  type        = bool
  default     = true
}

variable "log_kms_key_arn" {
  description = "KMS key (logs data class) for the access log group."
  type        = string
}

variable "manage_account_settings" {
  description = "Set the account-wide API Gateway CloudWatch role (one per account and region)."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
