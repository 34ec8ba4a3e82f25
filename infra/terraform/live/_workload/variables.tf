variable "region" {
  description = "Home region of the environment."
  type        = string
  default     = "eu-west-1"
}

variable "assume_role_arn" {
  description = "Role to assume in the environment's account (the pipeline runs in the management account). null = use the ambient credentials."
  type        = string
  default     = null
}

variable "aws_endpoint_url" {
  description = "Tests only: send every AWS API call to this endpoint (moto on loopback). null in real use."
  type        = string
  default     = null

  validation {
    condition     = var.aws_endpoint_url == null || can(regex("^http://127\\.0\\.0\\.1:[0-9]+$", var.aws_endpoint_url))
    error_message = "aws_endpoint_url may only point at a loopback emulator (http://127.0.0.1:PORT)."
  }
}

variable "features" {
  description = "Feature switches passed to modules/environment (keys of its features object). Only the emulator test switches real features off."
  type        = map(bool)
  default     = {}
}

variable "engine_ami_id" {
  description = "Engine AMI (infra/packer output). null = newest castle-engine-* AMI in the account."
  type        = string
  default     = null
}

variable "security_account_id" {
  description = "Security (audit) account: its central AWS Config bucket is castle-security-config-<id> (live/security)."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.security_account_id))
    error_message = "security_account_id must be a 12-digit account id."
  }
}

variable "config_kms_key_arn" {
  description = "KMS key of the central Config bucket (live/security output config_kms_key_arn)."
  type        = string
  default     = null
}

variable "transit_gateway_name" {
  description = "Name tag of the RAM-shared transit gateway from live/network. null = standalone VPC (no attachment)."
  type        = string
  default     = "castle-core"
}

variable "admin_role_arns" {
  description = "Platform roles: EKS cluster-admin and KMS key administrators."
  type        = list(string)
  default     = []
}

variable "fix_client_cidrs" {
  description = "Institutional client networks allowed to connect to FIX and binary order entry."
  type        = list(string)
  default     = []
}

variable "alarm_emails" {
  description = "Alarm e-mail subscribers."
  type        = list(string)
  default     = []
}

variable "throwaway" {
  description = "Disposable environment (tests): no deletion protection, destroyable buckets. Rejected for prod by the module."
  type        = bool
  default     = false
}

variable "create_autoscaling_service_linked_role" {
  description = "Create the Auto Scaling service-linked role (false when the account already has it)."
  type        = bool
  default     = true
}
