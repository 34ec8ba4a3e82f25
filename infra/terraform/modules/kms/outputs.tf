output "key_arns" {
  description = "Key ARN per data class."
  value       = { for k, v in aws_kms_key.this : k => v.arn }
}

output "key_ids" {
  description = "Key id per data class."
  value       = { for k, v in aws_kms_key.this : k => v.key_id }
}

output "alias_names" {
  description = "Alias name per data class."
  value       = { for k, v in aws_kms_alias.this : k => v.name }
}
