output "archive_bucket_id" {
  description = "Archive bucket name."
  value       = module.archive_bucket.id
}

output "archive_bucket_arn" {
  description = "Archive bucket ARN."
  value       = module.archive_bucket.arn
}

output "archive_object_lock_enabled" {
  description = "Whether the archive bucket has object lock (always true)."
  value       = module.archive_bucket.object_lock_enabled
}

output "glue_database" {
  description = "Glue database name."
  value       = aws_glue_catalog_database.this.name
}

output "glue_table" {
  description = "Glue table name."
  value       = aws_glue_catalog_table.events.name
}

output "athena_workgroup" {
  description = "Athena workgroup name."
  value       = aws_athena_workgroup.this.name
}

output "redshift_workgroup" {
  description = "Redshift Serverless workgroup name, or null."
  value       = one(aws_redshiftserverless_workgroup.this[*].workgroup_name)
}
