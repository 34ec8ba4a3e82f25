resource "aws_cloudwatch_log_group" "this" {
  for_each = var.log_groups

  name              = "/castle/${var.name_prefix}/${each.key}"
  retention_in_days = each.value
  kms_key_id        = var.kms_key_arn
  tags              = merge(var.tags, { Component = each.key })
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name_prefix}-alarms"
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic_subscription" "email" {
  for_each = toset(var.alarm_emails)

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = each.value
}

locals {
  t       = var.targets
  actions = [aws_sns_topic.alarms.arn]

  alarms = merge(
    { for n in local.t.engine_asg_names : "engine-in-service-${n}" => {
      description = "Engine group ${n} has fewer in-service instances than desired: a primary or standby is gone."
      namespace   = "AWS/AutoScaling"
      metric      = "GroupInServiceInstances"
      dimensions  = { AutoScalingGroupName = n }
      statistic   = "Minimum"
      comparison  = "LessThanThreshold"
      threshold   = 1
      periods     = 1
      period      = 60
    } },
    local.t.aurora_cluster_id == null ? {} : {
      "aurora-cpu" = {
        description = "Ledger database CPU above 80%: settlement lag will grow."
        namespace   = "AWS/RDS"
        metric      = "CPUUtilization"
        dimensions  = { DBClusterIdentifier = local.t.aurora_cluster_id }
        statistic   = "Average"
        comparison  = "GreaterThanThreshold"
        threshold   = 80
        periods     = 5
        period      = 60
      }
      "aurora-replica-lag" = {
        description = "Aurora replica lag above 1 s: failover would lose in-flight settlement batches' reads."
        namespace   = "AWS/RDS"
        metric      = "AuroraReplicaLagMaximum"
        dimensions  = { DBClusterIdentifier = local.t.aurora_cluster_id }
        statistic   = "Maximum"
        comparison  = "GreaterThanThreshold"
        threshold   = 1000
        periods     = 3
        period      = 60
      }
    },
    local.t.redis_replication_group == null ? {} : {
      "redis-memory" = {
        description = "Market data Redis memory above 80% (noeviction: writes will fail when full)."
        namespace   = "AWS/ElastiCache"
        metric      = "DatabaseMemoryUsagePercentage"
        dimensions  = { ReplicationGroupId = local.t.redis_replication_group }
        statistic   = "Maximum"
        comparison  = "GreaterThanThreshold"
        threshold   = 80
        periods     = 3
        period      = 60
      }
    },
    { for s in local.t.kinesis_stream_names : "kinesis-iterator-age-${s}" => {
      description = "Consumers of ${s} are behind by more than ${local.t.kinesis_iterator_age_max} ms."
      namespace   = "AWS/Kinesis"
      metric      = "GetRecords.IteratorAgeMilliseconds"
      dimensions  = { StreamName = s }
      statistic   = "Maximum"
      comparison  = "GreaterThanThreshold"
      threshold   = local.t.kinesis_iterator_age_max
      periods     = 3
      period      = 60
    } },
    !local.t.load_balancers ? {} : {
      "alb-5xx" = {
        description = "REST/WebSocket gateway returns 5xx."
        namespace   = "AWS/ApplicationELB"
        metric      = "HTTPCode_Target_5XX_Count"
        dimensions  = { LoadBalancer = local.t.alb_arn_suffix }
        statistic   = "Sum"
        comparison  = "GreaterThanThreshold"
        threshold   = 10
        periods     = 3
        period      = 60
      }
    },
    !local.t.load_balancers ? {} : {
      "nlb-unhealthy" = {
        description = "FIX/binary gateway targets unhealthy behind the NLB."
        namespace   = "AWS/NetworkELB"
        metric      = "UnHealthyHostCount"
        dimensions  = { LoadBalancer = local.t.nlb_arn_suffix }
        statistic   = "Maximum"
        comparison  = "GreaterThanThreshold"
        threshold   = 0
        periods     = 2
        period      = 60
      }
    },
  )
}

resource "aws_cloudwatch_metric_alarm" "this" {
  for_each = local.alarms

  alarm_name          = "${var.name_prefix}-${each.key}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  dimensions          = each.value.dimensions
  statistic           = each.value.statistic
  comparison_operator = each.value.comparison
  threshold           = each.value.threshold
  evaluation_periods  = each.value.periods
  period              = each.value.period
  treat_missing_data  = "breaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
  tags                = var.tags
}

resource "aws_xray_encryption_config" "this" {
  count = var.xray == null ? 0 : 1

  type   = "KMS"
  key_id = var.kms_key_arn
}

resource "aws_xray_sampling_rule" "api" {
  count = var.xray == null ? 0 : 1

  rule_name      = "${var.name_prefix}-api"
  priority       = 100
  version        = 1
  reservoir_size = var.xray.reservoir_size
  fixed_rate     = var.xray.fixed_rate
  url_path       = "/api/*"
  host           = "*"
  http_method    = "*"
  service_type   = "*"
  service_name   = "${var.name_prefix}-gateway-rest"
  resource_arn   = "*"
  tags           = var.tags
}

resource "aws_xray_group" "errors" {
  count = var.xray == null ? 0 : 1

  group_name        = "${var.name_prefix}-errors"
  filter_expression = "service(\"${var.name_prefix}-gateway-rest\") { fault OR error }"

  insights_configuration {
    insights_enabled      = true
    notifications_enabled = false
  }

  tags = var.tags
}
