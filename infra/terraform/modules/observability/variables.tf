variable "name_prefix" {
  description = "Prefix for names, e.g. \"castle-prod\"."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key (logs data class) for log groups and the alarm topic."
  type        = string
}

variable "log_groups" {
  description = "Log groups to create under /castle/<name_prefix>/: component => retention days."
  type        = map(number)
  default = {
    engine         = 400
    gateway-fix    = 400
    gateway-binary = 400
    gateway-rest   = 90
    settlement     = 400
    marketdata     = 30
    archive        = 90
    redis          = 30
    firehose       = 30
  }

  validation {
    condition     = alltrue([for d in values(var.log_groups) : contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], d)])
    error_message = "Retention must be one of the values CloudWatch Logs accepts."
  }
}

variable "alarm_emails" {
  description = "E-mail subscribers of the alarm topic (pager integrations subscribe out of band)."
  type        = list(string)
  default     = []
}

variable "targets" {
  description = "Resources to alarm on; null members are skipped. load_balancers (a plan-time known flag) enables the ALB/NLB alarms, whose ARN suffixes are only known after apply."
  type = object({
    engine_asg_names         = optional(list(string), [])
    aurora_cluster_id        = optional(string)
    redis_replication_group  = optional(string)
    kinesis_stream_names     = optional(list(string), [])
    load_balancers           = optional(bool, false)
    alb_arn_suffix           = optional(string)
    nlb_arn_suffix           = optional(string)
    kinesis_iterator_age_max = optional(number, 60000)
  })
  default = {}
}

variable "xray" {
  description = "X-Ray sampling for the request path (gateway-rest, settlement). null disables X-Ray resources."
  type = object({
    fixed_rate     = optional(number, 0.05)
    reservoir_size = optional(number, 5)
  })
  default = {}
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
