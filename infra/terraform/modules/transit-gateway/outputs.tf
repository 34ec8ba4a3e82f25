output "id" {
  description = "Transit gateway id."
  value       = aws_ec2_transit_gateway.this.id
}

output "arn" {
  description = "Transit gateway ARN."
  value       = aws_ec2_transit_gateway.this.arn
}

output "multicast_domain_id" {
  description = "Market data multicast domain id, or null."
  value       = one(aws_ec2_transit_gateway_multicast_domain.feed[*].id)
}

output "resource_share_arn" {
  description = "RAM share ARN, or null."
  value       = one(aws_ram_resource_share.this[*].arn)
}
