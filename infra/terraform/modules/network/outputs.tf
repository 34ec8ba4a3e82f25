output "vpc_id" {
  description = "VPC id."
  value       = aws_vpc.this.id
}

output "cidr_block" {
  description = "VPC CIDR."
  value       = aws_vpc.this.cidr_block
}

output "public_subnet_ids" {
  description = "Public subnet ids, in availability_zones order."
  value       = [for az in var.availability_zones : aws_subnet.public[az].id]
}

output "private_subnet_ids" {
  description = "Private (workload) subnet ids, in availability_zones order."
  value       = [for az in var.availability_zones : aws_subnet.private[az].id]
}

output "data_subnet_ids" {
  description = "Data subnet ids (no internet route), in availability_zones order."
  value       = [for az in var.availability_zones : aws_subnet.data[az].id]
}

output "private_route_table_ids" {
  description = "Private route table ids, one per AZ."
  value       = [for az in var.availability_zones : aws_route_table.private[az].id]
}

output "nat_gateway_count" {
  description = "Number of NAT gateways."
  value       = length(aws_nat_gateway.this)
}

output "transit_gateway_attachment_id" {
  description = "Transit gateway VPC attachment id, or null."
  value       = one(aws_ec2_transit_gateway_vpc_attachment.this[*].id)
}

output "interface_endpoint_ids" {
  description = "Interface endpoint id per service."
  value       = { for k, v in aws_vpc_endpoint.interface : k => v.id }
}
