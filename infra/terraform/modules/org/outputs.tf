output "organization_id" {
  description = "Organization id."
  value       = aws_organizations_organization.this.id
}

output "organization_arn" {
  description = "Organization ARN (RAM shares, bucket policies)."
  value       = aws_organizations_organization.this.arn
}

output "ou_ids" {
  description = "OU id per key."
  value       = local.ou_ids
}

output "account_ids" {
  description = "Account id per key."
  value       = { for k, v in aws_organizations_account.this : k => v.id }
}

output "scp_documents" {
  description = "Rendered SCP JSON per policy (minified)."
  value       = local.scp_documents
}

output "scp_ids" {
  description = "SCP id per policy."
  value       = { for k, v in aws_organizations_policy.scp : k => v.id }
}
