output "cluster_name" {
  description = "EKS cluster name."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "API server endpoint."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_security_group_id" {
  description = "Security group EKS attaches to the control plane and managed nodes (engine and data stores allow it)."
  value       = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

output "workload_role_arns" {
  description = "IAM role ARN per workload (service account)."
  value       = { for k, v in aws_iam_role.workload : k => v.arn }
}

output "node_group_names" {
  description = "Managed node group names."
  value       = [for g in aws_eks_node_group.this : g.node_group_name]
}
