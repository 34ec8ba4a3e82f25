output "autoscaling_group_name" {
  description = "Auto Scaling group name."
  value       = aws_autoscaling_group.this.name
}

output "placement_group_name" {
  description = "Cluster placement group name (null only when placement_group = false)."
  value       = one(aws_placement_group.this[*].name)
}

output "placement_strategy" {
  description = "Placement strategy (cluster)."
  value       = one(aws_placement_group.this[*].strategy)
}

output "launch_template_id" {
  description = "Launch template id."
  value       = aws_launch_template.this.id
}

output "security_group_id" {
  description = "Engine security group id."
  value       = aws_security_group.this.id
}

output "role_arn" {
  description = "Engine instance role ARN."
  value       = aws_iam_role.this.arn
}
