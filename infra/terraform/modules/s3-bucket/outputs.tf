output "id" {
  description = "Bucket name."
  value       = aws_s3_bucket.this.id
}

output "arn" {
  description = "Bucket ARN."
  value       = aws_s3_bucket.this.arn
}

output "bucket_regional_domain_name" {
  description = "Regional domain name (CloudFront origin)."
  value       = aws_s3_bucket.this.bucket_regional_domain_name
}

output "encryption_algorithm" {
  description = "Server-side encryption algorithm in force (aws:kms or AES256)."
  value       = one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default[0].sse_algorithm
}

output "object_lock_enabled" {
  description = "Whether object lock is enabled."
  value       = aws_s3_bucket.this.object_lock_enabled
}
