variable "name" {
  description = "Prefix for names, e.g. \"castle-prod\"."
  type        = string
}

variable "domain_name" {
  description = "DNS zone of the environment, e.g. \"castle.example\" (prod) or \"dev.castle.example\". The module creates the public hosted zone; delegate it from the parent zone."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the load balancers."
  type        = string
}

variable "public_subnet_ids" {
  description = "Public subnets (one per AZ) for the ALB and NLB."
  type        = list(string)
}

variable "features" {
  description = "Optional parts. shield_advanced costs a yearly subscription; cloudfront and health_checks can be switched off where they cannot be emulated."
  type = object({
    cloudfront      = optional(bool, true)
    shield_advanced = optional(bool, false)
    health_checks   = optional(bool, true)
    waf_logging     = optional(bool, true)
  })
  default = {}
}

variable "ports" {
  description = "Public ports: FIX and binary order entry on the NLB (TLS is terminated by the gateways themselves: the NLB passes TCP through)."
  type = object({
    fix    = optional(number, 9880)
    binary = optional(number, 9890)
  })
  default = {}
}

variable "fix_client_cidrs" {
  description = "Institutional client networks allowed to reach the FIX and binary ports (allow-list, as is usual for order entry)."
  type        = list(string)
  default     = []
}

variable "rate_limit_per_5min" {
  description = "Requests per 5 minutes per client IP above which the WAF blocks (rate-based rule), before the application's own weighted limits."
  type        = number
  default     = 2000

  validation {
    condition     = var.rate_limit_per_5min >= 10 && var.rate_limit_per_5min <= 2000000000
    error_message = "rate_limit_per_5min must be 10-2,000,000,000 (WAF's range)."
  }
}

variable "blocked_countries" {
  description = "ISO country codes denied at CloudFront and the WAF (sanctions compliance)."
  type        = list(string)
  default     = ["CU", "IR", "KP", "SY"]
}

variable "log_kms_key_arn" {
  description = "KMS key (logs data class) for the WAF log groups."
  type        = string
}

variable "deletion_protection" {
  description = "Deletion protection of the load balancers."
  type        = bool
  default     = true
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
