output "zone_id" {
  description = "Public hosted zone id."
  value       = aws_route53_zone.this.zone_id
}

output "name_servers" {
  description = "Name servers to delegate the zone to."
  value       = aws_route53_zone.this.name_servers
}

output "alb_arn" {
  description = "ALB ARN."
  value       = aws_lb.alb.arn
}

output "alb_arn_suffix" {
  description = "ALB ARN suffix (CloudWatch dimension)."
  value       = aws_lb.alb.arn_suffix
}

output "alb_dns_name" {
  description = "ALB DNS name."
  value       = aws_lb.alb.dns_name
}

output "alb_security_group_id" {
  description = "ALB security group (gateway-rest pods allow it)."
  value       = aws_security_group.alb.id
}

output "nlb_arn_suffix" {
  description = "NLB ARN suffix (CloudWatch dimension)."
  value       = aws_lb.nlb.arn_suffix
}

output "nlb_security_group_id" {
  description = "NLB security group (FIX/binary pods allow it)."
  value       = aws_security_group.nlb.id
}

output "nlb_public_ips" {
  description = "Static public IPs of the order-entry NLB, to hand to institutional clients."
  value       = aws_eip.nlb[*].public_ip
}

output "target_group_arns" {
  description = "Target groups for TargetGroupBinding objects: rest, ws, fix, binary."
  value = merge(
    { rest = aws_lb_target_group.rest.arn, ws = aws_lb_target_group.ws.arn },
    { for k, v in aws_lb_target_group.order_entry : k => v.arn },
  )
}

output "regional_web_acl_arn" {
  description = "Regional WAF web ACL (also used by API Gateway)."
  value       = aws_wafv2_web_acl.regional.arn
}

output "cloudfront_domain_name" {
  description = "CloudFront domain, or null."
  value       = one(aws_cloudfront_distribution.web[*].domain_name)
}

output "hosts" {
  description = "Public host names."
  value       = local.hosts
}

output "shield_protected" {
  description = "Resources under Shield Advanced protection."
  value       = keys(aws_shield_protection.this)
}
