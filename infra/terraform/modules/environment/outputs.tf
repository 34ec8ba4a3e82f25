output "vpc_id" {
  description = "VPC id."
  value       = module.network.vpc_id
}

output "private_subnet_ids" {
  description = "Private subnets."
  value       = module.network.private_subnet_ids
}

output "kms_key_arns" {
  description = "KMS key per data class."
  value       = module.kms.key_arns
}

output "engine" {
  description = "Engine groups per shard: ASG, placement group, launch template."
  value = { for k, m in module.engine : k => {
    asg             = m.autoscaling_group_name
    placement_group = m.placement_group_name
    launch_template = m.launch_template_id
  } }
}

output "events_stream" {
  description = "Kinesis event stream name."
  value       = module.streaming.stream_names["events"]
}

output "archive_bucket" {
  description = "Event archive bucket."
  value       = module.analytics.archive_bucket_id
}

output "aurora_endpoint" {
  description = "Ledger writer endpoint, or null."
  value       = try(module.aurora[0].endpoint, null)
}

output "redis_endpoint" {
  description = "Redis configuration endpoint, or null."
  value       = try(module.redis[0].configuration_endpoint, null)
}

output "eks_cluster_name" {
  description = "EKS cluster, or null."
  value       = try(module.eks[0].cluster_name, null)
}

output "workload_role_arns" {
  description = "Pod Identity role per workload (for the Helm values), or {}."
  value       = try(module.eks[0].workload_role_arns, {})
}

output "target_group_arns" {
  description = "Target groups for the Helm chart's TargetGroupBindings, or {}."
  value       = try(module.edge[0].target_group_arns, {})
}

output "nlb_public_ips" {
  description = "Order-entry IPs for institutional clients, or []."
  value       = try(module.edge[0].nlb_public_ips, [])
}

output "cognito_user_pool_id" {
  description = "Retail user pool, or null."
  value       = try(module.cognito[0].user_pool_id, null)
}

output "alarm_topic_arn" {
  description = "Alarm topic."
  value       = module.observability.alarm_topic_arn
}

output "ecr_repository_url" {
  description = "Repository of the castle image."
  value       = aws_ecr_repository.castle.repository_url
}
