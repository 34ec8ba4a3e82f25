variable "name" {
  description = "Name of the engine group, e.g. \"castle-prod-engine-shard-a\"."
  type        = string
}

variable "shard" {
  description = "Instrument group (shard) this engine group runs. Passed to the castle binary as CASTLE_SHARD."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9-]{1,32}$", var.shard))
    error_message = "shard must be 1-32 lowercase letters, digits or dashes."
  }
}

variable "vpc_id" {
  description = "VPC of the engine."
  type        = string
}

variable "subnet_id" {
  description = "Single private subnet for the group. A cluster placement group lives in one AZ; a cross-AZ disaster-recovery standby is a second instance of this module."
  type        = string
}

variable "ami_id" {
  description = "Engine AMI built by infra/packer. null looks up the newest AMI named ami_name_pattern owned by this account."
  type        = string
  default     = null
}

variable "ami_name_pattern" {
  description = "Name pattern of the Packer-built AMI when ami_id is null."
  type        = string
  default     = "castle-engine-*"
}

variable "instance_type" {
  description = <<-EOT
    Instance type. Low-latency choices: metal or whole-socket sizes (c7i.metal-24xl, c6in.metal, m7i.metal-24xl) so
    that isolcpus/nohz_full and C-state limits act on physical cores, and network-optimised (c6in/c7gn/c7i) for ENA
    throughput. The AMI's tuning assumes x86_64.
  EOT
  type        = string
  default     = "c7i.metal-24xl"
}

variable "threads_per_core" {
  description = "1 disables SMT so the matching thread owns a physical core. null keeps the instance default (metal types do not accept CPU options)."
  type        = number
  default     = null

  validation {
    condition     = var.threads_per_core == null || contains([1, 2], coalesce(var.threads_per_core, 1))
    error_message = "threads_per_core must be 1, 2 or null."
  }
}

variable "placement_group" {
  description = "Launch the group into its cluster placement group. Always true on AWS; false only where the API is missing (the moto emulator has no CreatePlacementGroup)."
  type        = bool
  default     = true
}

variable "force_delete" {
  description = "Let terraform destroy delete the group with its (scale-in protected) instances. Only for throwaway environments: it kills running engines without draining."
  type        = bool
  default     = false
}

variable "instance_count" {
  description = "Instances in the group: one primary plus hot standbys replaying its journal, all in the same cluster placement group."
  type        = number
  default     = 2

  validation {
    condition     = var.instance_count >= 1 && var.instance_count <= 4
    error_message = "instance_count must be between 1 and 4."
  }
}

variable "root_volume_gb" {
  description = "Root volume size (gp3)."
  type        = number
  default     = 30
}

variable "journal_volume" {
  description = "Dedicated volume for the engine journal (group commit fsyncs land here): io2 Block Express for consistent sub-millisecond fsync latency in prod; gp3 is acceptable for dev."
  type = object({
    size_gb = number
    iops    = number
    type    = optional(string, "io2")
  })
  default = {
    size_gb = 200
    iops    = 16000
  }

  validation {
    condition     = contains(["io2", "gp3"], var.journal_volume.type)
    error_message = "journal_volume.type must be io2 or gp3."
  }
}

variable "kms_key_arn" {
  description = "KMS key (trading data class) for the EBS volumes. Volumes are always encrypted."
  type        = string
}

variable "ingress" {
  description = "Who may reach the engine on the command, event-stream and metrics ports: security groups by a static name (e.g. { eks_nodes = sg-... }, so the set of rules is known at plan time even when the ids are not) and CIDRs."
  type = object({
    security_groups = optional(map(string), {})
    cidr_blocks     = optional(list(string), [])
  })
  default = {}
}

variable "ports" {
  description = "Engine listening ports: command serves gateways, event-stream subscribers and standbys (one listener, as `castle engine --listen`); metrics serves /metrics, /live and /ready."
  type = object({
    command = optional(number, 7400)
    metrics = optional(number, 9100)
  })
  default = {}
}

variable "environment" {
  description = "Extra environment for the castle engine process (written to /etc/castle/engine.env)."
  type        = map(string)
  default     = {}
}

variable "journal_bucket_arn" {
  description = "S3 bucket receiving journal segments and snapshots (null = none)."
  type        = string
  default     = null
}

variable "log_group_name" {
  description = "CloudWatch log group the CloudWatch agent ships engine logs to."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource (propagated to instances and volumes)."
  type        = map(string)
  default     = {}
}

variable "referee" {
  description = <<-EOT
    The fencing referee (`castle referee`, ARCHITECTURE.md "Fencing with a referee") on a small instance of its own in
    subnet_id, which should be in another AZ than the engines (a third failure domain). It keeps its state file on an
    encrypted EBS volume that outlives the instance, behind a fixed network interface whose address the engines are
    given. Every engine then runs with CASTLE_REFEREE, CASTLE_NODE_ID (its private IPv4 address as a number: unique
    in the VPC, never 0) and CASTLE_ADVERTISE: the first node to reach the referee holds the lease, the others follow
    it. null: no referee, only allowed with a single instance (two unfenced instances would both accept orders).
  EOT
  type = object({
    subnet_id       = string
    instance_type   = optional(string, "t3.small")
    port            = optional(number, 7500)
    lease_ms        = optional(number, 2000)
    state_volume_gb = optional(number, 1)
  })
  default = null

  validation {
    condition     = var.referee == null || try(var.referee.lease_ms >= 10 && var.referee.port > 0 && var.referee.port < 65536, false)
    error_message = "referee.lease_ms must be at least 10 (castle referee refuses less) and referee.port a TCP port."
  }
}
