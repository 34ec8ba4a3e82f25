output "rest_api_id" {
  description = "REST API id."
  value       = aws_api_gateway_rest_api.this.id
}

output "invoke_url" {
  description = "Stage invoke URL."
  value       = aws_api_gateway_stage.v1.invoke_url
}

output "usage_plan_ids" {
  description = "Usage plan id per tier (API keys are issued per partner out of band and attached to a plan)."
  value       = { for k, v in aws_api_gateway_usage_plan.this : k => v.id }
}
