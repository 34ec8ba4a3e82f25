variable "name_prefix" {
  description = "Prefix for stream names, e.g. \"castle-prod\"."
  type        = string
}

variable "streams" {
  description = <<-EOT
    Kinesis data streams: short name => settings. "events" carries the engine's sequenced event stream
    (partition key = shard, so order per shard is kept) that the archive and KEDA-scaled consumers read.
  EOT
  type = map(object({
    on_demand       = optional(bool, false)
    shard_count     = optional(number, 1)
    retention_hours = optional(number, 168)
    archive         = optional(bool, true)
  }))

  validation {
    condition     = alltrue([for s in values(var.streams) : s.retention_hours >= 24 && s.retention_hours <= 8760])
    error_message = "retention_hours must be 24-8760."
  }

  validation {
    condition     = alltrue([for s in values(var.streams) : s.on_demand || s.shard_count >= 1])
    error_message = "Provisioned streams need at least one shard."
  }
}

variable "kms_key_arn" {
  description = "KMS key (marketdata/trading stream class) for server-side encryption of the streams. Always on."
  type        = string
}

variable "archive" {
  description = "Firehose delivery of archived streams to S3 (the layout the Glue table describes). null disables delivery."
  type = object({
    bucket_arn       = string
    kms_key_arn      = string
    prefix           = optional(string, "events")
    buffer_mb        = optional(number, 64)
    buffer_seconds   = optional(number, 60)
    log_group_name   = optional(string)
    log_stream_names = optional(bool, true)
  })
  default = null
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
