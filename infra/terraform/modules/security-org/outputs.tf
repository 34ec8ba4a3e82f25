output "trail_bucket" {
  description = "CloudTrail bucket (object-locked)."
  value       = module.trail_bucket.id
}

output "trail_arn" {
  description = "Organization trail ARN."
  value       = aws_cloudtrail.organization.arn
}

output "config_bucket" {
  description = "Central AWS Config bucket for every account's delivery channel."
  value       = module.config_bucket.id
}

output "config_kms_key_arn" {
  description = "Key of the Config bucket (delivery channels pass it)."
  value       = module.kms.key_arns["config"]
}

output "kms_key_arns" {
  description = "Security account keys per data class."
  value       = module.kms.key_arns
}

output "ebs_kms_key_arn" {
  description = "Default EBS key of the security account."
  value       = module.kms.key_arns["ebs"]
}

output "guardduty_detector_id" {
  description = "Administrator GuardDuty detector."
  value       = aws_guardduty_detector.this.id
}
