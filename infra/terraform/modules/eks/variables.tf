variable "name" {
  description = "Cluster name, e.g. \"castle-prod\"."
  type        = string
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version."
  type        = string
  default     = "1.32"
}

variable "vpc_id" {
  description = "VPC of the cluster."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the control plane ENIs and the nodes (two or more AZs)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "EKS needs subnets in at least two availability zones."
  }
}

variable "public_endpoint_cidrs" {
  description = "CIDRs allowed to reach the public API endpoint. Empty keeps the endpoint private only (prod)."
  type        = list(string)
  default     = []
}

variable "kms_key_arn" {
  description = "KMS key (secrets data class) for envelope encryption of Kubernetes secrets and node volumes."
  type        = string
}

variable "admin_role_arns" {
  description = "IAM roles granted cluster-admin through EKS access entries (no aws-auth ConfigMap)."
  type        = list(string)
  default     = []
}

variable "node_groups" {
  description = "Managed node groups. gateways get network-optimised instances; settlement/marketdata share the general group."
  type = map(object({
    instance_types = list(string)
    min_size       = number
    max_size       = number
    desired_size   = number
    disk_gb        = optional(number, 50)
    labels         = optional(map(string), {})
    taints = optional(list(object({
      key    = string
      value  = string
      effect = string
    })), [])
  }))

  validation {
    condition     = alltrue([for g in values(var.node_groups) : g.min_size <= g.desired_size && g.desired_size <= g.max_size])
    error_message = "Each node group needs min_size <= desired_size <= max_size."
  }
}

variable "workloads" {
  description = <<-EOT
    Kubernetes service accounts that get an IAM role through EKS Pod Identity: name => { namespace, service_account,
    policy_json }. The Helm chart under deploy/ uses the same service account names.
  EOT
  type = map(object({
    namespace       = string
    service_account = string
    policy_json     = string
  }))
  default = {}
}

variable "log_retention_days" {
  description = "Retention of the control plane log group."
  type        = number
  default     = 90
}

variable "log_kms_key_arn" {
  description = "KMS key (logs data class) of the control plane log group."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
