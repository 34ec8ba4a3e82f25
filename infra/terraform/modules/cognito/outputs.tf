output "user_pool_id" {
  description = "User pool id."
  value       = aws_cognito_user_pool.this.id
}

output "user_pool_arn" {
  description = "User pool ARN (API Gateway authorizer)."
  value       = aws_cognito_user_pool.this.arn
}

output "web_client_id" {
  description = "App client id of the retail web app (public client, PKCE)."
  value       = aws_cognito_user_pool_client.web.id
}

output "issuer" {
  description = "OIDC issuer URL, for gateway-rest token validation."
  value       = "https://${aws_cognito_user_pool.this.endpoint}"
}
