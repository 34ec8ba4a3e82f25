variable "accounts" {
  description = <<-EOT
    Member accounts: key => { name, email, ou }. ou is one of the organizational unit keys:
    security, infrastructure, workloads_prod, workloads_sdlc.
  EOT
  type = map(object({
    name  = string
    email = string
    ou    = string
  }))

  validation {
    condition     = alltrue([for a in values(var.accounts) : contains(["security", "infrastructure", "workloads_prod", "workloads_sdlc"], a.ou)])
    error_message = "Each account's ou must be security, infrastructure, workloads_prod or workloads_sdlc."
  }

  validation {
    condition     = alltrue([for a in values(var.accounts) : can(regex("^[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$", a.email))])
    error_message = "Each account needs a valid e-mail address."
  }
}

variable "allowed_regions" {
  description = "Regions workloads may use (region allow-list SCP). Global services are exempt."
  type        = list(string)
  default     = ["eu-west-1", "eu-central-1", "us-east-1"]

  validation {
    condition     = contains(var.allowed_regions, "us-east-1")
    error_message = "us-east-1 must stay allowed: CloudFront certificates and CLOUDFRONT-scope WAF live there."
  }
}

variable "exempt_role_arns" {
  description = "Principals (ARN patterns) exempt from the protective SCPs: the Terraform pipeline role and break-glass."
  type        = list(string)
  default = [
    "arn:aws:iam::*:role/castle-terraform",
    "arn:aws:iam::*:role/castle-break-glass",
  ]
}

variable "delegated_admin_account" {
  description = "Key (in accounts) of the account that administers GuardDuty, Security Hub, Config and CloudTrail for the organization."
  type        = string
  default     = "security"
}

variable "tags" {
  description = "Tags for accounts, OUs and policies."
  type        = map(string)
  default     = {}
}
