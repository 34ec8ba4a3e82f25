output "configuration_endpoint" {
  description = "Cluster-mode configuration endpoint (rediss://, TLS)."
  value       = aws_elasticache_replication_group.this.configuration_endpoint_address
}

output "replication_group_id" {
  description = "Replication group id."
  value       = aws_elasticache_replication_group.this.id
}

output "replication_group_arn" {
  description = "Replication group ARN."
  value       = aws_elasticache_replication_group.this.arn
}

output "user_arns" {
  description = "ARN per IAM-authenticated user, for elasticache:Connect policies."
  value       = { for k, v in aws_elasticache_user.iam : k => v.arn }
}

output "security_group_id" {
  description = "Cluster security group."
  value       = aws_security_group.this.id
}
