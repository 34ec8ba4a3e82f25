locals {
  glue_name = replace(var.name_prefix, "-", "_")
}

module "archive_bucket" {
  source = "../s3-bucket"

  name          = var.archive_bucket_name
  kms_key_arn   = var.kms_key_arn
  force_destroy = var.force_destroy
  object_lock = {
    mode = var.archive_retention.lock_mode
    days = var.archive_retention.lock_days
  }
  lifecycle_rules = [{
    id     = "archive-to-glacier"
    prefix = "${var.archive_prefix}/"
    transitions = [
      { days = var.archive_retention.glacier_ir_days, storage_class = "GLACIER_IR" },
      { days = var.archive_retention.deep_archive_days, storage_class = "DEEP_ARCHIVE" },
    ]
    expiration_days            = var.archive_retention.expire_days
    noncurrent_expiration_days = 30
    }, {
    id              = "delivery-errors"
    prefix          = "errors/"
    expiration_days = 90
  }]
  access_log_bucket = var.access_log_bucket
  tags              = var.tags
}

module "athena_results" {
  source = "../s3-bucket"

  name          = "${var.archive_bucket_name}-athena"
  kms_key_arn   = var.kms_key_arn
  force_destroy = var.force_destroy
  lifecycle_rules = [{
    id                         = "expire-query-results"
    expiration_days            = 30
    noncurrent_expiration_days = 1
  }]
  access_log_bucket = var.access_log_bucket
  tags              = var.tags
}

resource "aws_glue_catalog_database" "this" {
  name        = "${local.glue_name}_archive"
  description = "Castle sequenced event archive (${var.name_prefix})"
  tags        = var.tags
}

# One row per sequenced engine event, as delivered by Firehose: gzip'd JSON lines under
# <prefix>/stream=<s>/dt=YYYY-MM-DD/hr=HH/. Partition projection means no crawler and no MSCK REPAIR.
resource "aws_glue_catalog_table" "events" {
  name          = "events"
  database_name = aws_glue_catalog_database.this.name
  description   = "Engine event stream archive"
  table_type    = "EXTERNAL_TABLE"

  parameters = {
    "classification"            = "json"
    "compressionType"           = "gzip"
    "projection.enabled"        = "true"
    "projection.stream.type"    = "enum"
    "projection.stream.values"  = join(",", var.stream_names)
    "projection.dt.type"        = "date"
    "projection.dt.format"      = "yyyy-MM-dd"
    "projection.dt.range"       = "2024-01-01,NOW"
    "projection.dt.interval"    = "1"
    "projection.dt.unit"        = "DAYS"
    "projection.hr.type"        = "integer"
    "projection.hr.range"       = "0,23"
    "projection.hr.digits"      = "2"
    "storage.location.template" = "s3://${module.archive_bucket.id}/${var.archive_prefix}/stream=$${stream}/dt=$${dt}/hr=$${hr}/"
  }

  partition_keys {
    name = "stream"
    type = "string"
  }
  partition_keys {
    name = "dt"
    type = "string"
  }
  partition_keys {
    name = "hr"
    type = "string"
  }

  storage_descriptor {
    location      = "s3://${module.archive_bucket.id}/${var.archive_prefix}/"
    input_format  = "org.apache.hadoop.mapred.TextInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
    compressed    = true

    ser_de_info {
      name                  = "json"
      serialization_library = "org.openx.data.jsonserde.JsonSerDe"
      parameters            = { "ignore.malformed.json" = "false" }
    }

    columns {
      name    = "seq"
      type    = "bigint"
      comment = "engine sequence number (unique and gap-free per shard)"
    }
    columns {
      name    = "shard"
      type    = "string"
      comment = "instrument group"
    }
    columns {
      name    = "ts_ns"
      type    = "bigint"
      comment = "engine timestamp, ns since the Unix epoch"
    }
    columns {
      name    = "kind"
      type    = "string"
      comment = "event type (order_accepted, trade, cancel, ...)"
    }
    columns {
      name    = "instrument"
      type    = "string"
      comment = "instrument symbol"
    }
    columns {
      name    = "body"
      type    = "string"
      comment = "event payload as JSON"
    }
  }
}

resource "aws_athena_workgroup" "this" {
  name          = "${var.name_prefix}-archive"
  description   = "Queries over the Castle event archive"
  force_destroy = var.force_destroy

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = 1099511627776

    result_configuration {
      output_location = "s3://${module.athena_results.id}/results/"
      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = var.kms_key_arn
      }
    }
  }

  tags = var.tags
}

resource "aws_redshiftserverless_namespace" "this" {
  count = var.redshift == null ? 0 : 1

  namespace_name                   = "${var.name_prefix}-analytics"
  db_name                          = "castle"
  admin_username                   = "castle_admin"
  manage_admin_password            = true
  admin_password_secret_kms_key_id = var.kms_key_arn
  kms_key_id                       = var.kms_key_arn
  log_exports                      = ["userlog", "connectionlog", "useractivitylog"]
  tags                             = var.tags
}

resource "aws_redshiftserverless_workgroup" "this" {
  count = var.redshift == null ? 0 : 1

  namespace_name       = aws_redshiftserverless_namespace.this[0].namespace_name
  workgroup_name       = "${var.name_prefix}-analytics"
  base_capacity        = var.redshift.base_capacity_rpu
  max_capacity         = var.redshift.max_capacity_rpu
  subnet_ids           = var.redshift.subnet_ids
  security_group_ids   = var.redshift.security_group_ids
  publicly_accessible  = false
  enhanced_vpc_routing = true
  tags                 = var.tags
}
