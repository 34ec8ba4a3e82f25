resource "aws_kinesis_stream" "this" {
  for_each = var.streams

  name             = "${var.name_prefix}-${each.key}"
  shard_count      = each.value.on_demand ? null : each.value.shard_count
  retention_period = each.value.retention_hours
  encryption_type  = "KMS"
  kms_key_id       = var.kms_key_arn

  shard_level_metrics = ["IncomingBytes", "IncomingRecords", "OutgoingRecords", "IteratorAgeMilliseconds", "WriteProvisionedThroughputExceeded", "ReadProvisionedThroughputExceeded"]

  stream_mode_details {
    stream_mode = each.value.on_demand ? "ON_DEMAND" : "PROVISIONED"
  }

  tags = merge(var.tags, { Name = "${var.name_prefix}-${each.key}" })
}

locals {
  archived = var.archive == null ? {} : { for k, v in var.streams : k => v if v.archive }
}

data "aws_iam_policy_document" "firehose_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["firehose.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "firehose" {
  count = length(local.archived) > 0 ? 1 : 0

  name               = "${var.name_prefix}-archive-firehose"
  assume_role_policy = data.aws_iam_policy_document.firehose_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "firehose" {
  count = length(local.archived) > 0 ? 1 : 0

  statement {
    sid       = "ReadStreams"
    actions   = ["kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetShardIterator", "kinesis:GetRecords", "kinesis:ListShards"]
    resources = [for k in keys(local.archived) : aws_kinesis_stream.this[k].arn]
  }
  statement {
    sid       = "WriteArchive"
    actions   = ["s3:AbortMultipartUpload", "s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:PutObject"]
    resources = [var.archive.bucket_arn, "${var.archive.bucket_arn}/*"]
  }
  statement {
    sid       = "Keys"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = distinct([var.kms_key_arn, var.archive.kms_key_arn])
  }
  statement {
    sid       = "DeliveryErrors"
    actions   = ["logs:PutLogEvents", "logs:CreateLogStream"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "firehose" {
  count = length(local.archived) > 0 ? 1 : 0

  name   = "archive"
  role   = aws_iam_role.firehose[0].id
  policy = data.aws_iam_policy_document.firehose[0].json
}

resource "aws_kinesis_firehose_delivery_stream" "archive" {
  for_each = local.archived

  name        = "${var.name_prefix}-${each.key}-archive"
  destination = "extended_s3"

  kinesis_source_configuration {
    kinesis_stream_arn = aws_kinesis_stream.this[each.key].arn
    role_arn           = aws_iam_role.firehose[0].arn
  }

  extended_s3_configuration {
    role_arn    = aws_iam_role.firehose[0].arn
    bucket_arn  = var.archive.bucket_arn
    kms_key_arn = var.archive.kms_key_arn
    # Hive-style partitions, matching the Glue table's partition projection (modules/analytics).
    prefix              = "${var.archive.prefix}/stream=${each.key}/dt=!{timestamp:yyyy-MM-dd}/hr=!{timestamp:HH}/"
    error_output_prefix = "errors/stream=${each.key}/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/"
    buffering_size      = var.archive.buffer_mb
    buffering_interval  = var.archive.buffer_seconds
    compression_format  = "GZIP"

    dynamic "cloudwatch_logging_options" {
      for_each = var.archive.log_group_name == null ? [] : [var.archive.log_group_name]
      content {
        enabled         = true
        log_group_name  = cloudwatch_logging_options.value
        log_stream_name = "${each.key}-archive"
      }
    }
  }

  tags = var.tags

  depends_on = [aws_iam_role_policy.firehose]
}
