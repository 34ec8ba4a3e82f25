output "stream_arns" {
  description = "Stream ARN per short name."
  value       = { for k, v in aws_kinesis_stream.this : k => v.arn }
}

output "stream_names" {
  description = "Stream name per short name."
  value       = { for k, v in aws_kinesis_stream.this : k => v.name }
}

output "firehose_arns" {
  description = "Archive delivery stream ARN per archived stream."
  value       = { for k, v in aws_kinesis_firehose_delivery_stream.archive : k => v.arn }
}
