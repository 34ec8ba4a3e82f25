output "guardduty_detector_id" {
  description = "GuardDuty detector id, or null."
  value       = one(aws_guardduty_detector.this[*].id)
}

output "config_rule_names" {
  description = "Config rules evaluated in this account."
  value       = keys(aws_config_config_rule.managed)
}

output "ebs_encryption_by_default" {
  description = "Always true."
  value       = aws_ebs_encryption_by_default.this.enabled
}

output "autoscaling_service_linked_role_arn" {
  description = "ARN of the Auto Scaling service-linked role (whether created here or already present)."
  value       = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
  depends_on  = [aws_iam_service_linked_role.autoscaling]
}
