output "log_group_names" {
  description = "Log group name per component."
  value       = { for k, v in aws_cloudwatch_log_group.this : k => v.name }
}

output "log_group_arns" {
  description = "Log group ARN per component."
  value       = { for k, v in aws_cloudwatch_log_group.this : k => v.arn }
}

output "alarm_topic_arn" {
  description = "SNS topic receiving alarms."
  value       = aws_sns_topic.alarms.arn
}

output "alarm_names" {
  description = "Names of the alarms created."
  value       = [for a in aws_cloudwatch_metric_alarm.this : a.alarm_name]
}
