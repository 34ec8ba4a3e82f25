# Module logic of the hardened bucket, against a mocked AWS provider (no credentials, no network).
mock_provider "aws" {
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
}

variables {
  name        = "castle-test-bucket"
  kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
}

run "kms_encryption_and_no_public_access" {
  command = apply

  assert {
    condition     = output.encryption_algorithm == "aws:kms"
    error_message = "A bucket with a key must use SSE-KMS."
  }
  assert {
    condition     = one(aws_s3_bucket_server_side_encryption_configuration.this.rule).bucket_key_enabled == true
    error_message = "S3 bucket keys must be on with SSE-KMS."
  }
  assert {
    condition = alltrue([
      aws_s3_bucket_public_access_block.this.block_public_acls,
      aws_s3_bucket_public_access_block.this.block_public_policy,
      aws_s3_bucket_public_access_block.this.ignore_public_acls,
      aws_s3_bucket_public_access_block.this.restrict_public_buckets,
    ])
    error_message = "All four public access blocks must be on."
  }
  assert {
    condition     = one(aws_s3_bucket_ownership_controls.this.rule).object_ownership == "BucketOwnerEnforced"
    error_message = "ACLs must be disabled."
  }
  assert {
    condition     = one(aws_s3_bucket_versioning.this.versioning_configuration).status == "Enabled"
    error_message = "Versioning must be on."
  }
  assert {
    condition     = length(aws_s3_bucket_object_lock_configuration.this) == 0 && output.object_lock_enabled == false
    error_message = "No object lock unless asked for."
  }
}

run "encryption_cannot_be_switched_off" {
  command = apply

  variables {
    kms_key_arn = null
  }

  assert {
    condition     = output.encryption_algorithm == "AES256"
    error_message = "Without a key the bucket must still be encrypted (SSE-S3)."
  }
}

run "object_lock_and_glacier_lifecycle" {
  command = apply

  variables {
    object_lock = { mode = "COMPLIANCE", days = 365 }
    lifecycle_rules = [{
      id          = "to-glacier"
      prefix      = "events/"
      transitions = [{ days = 30, storage_class = "GLACIER_IR" }, { days = 180, storage_class = "DEEP_ARCHIVE" }]
    }]
  }

  assert {
    condition     = aws_s3_bucket.this.object_lock_enabled == true
    error_message = "Object lock must be enabled on the bucket."
  }
  assert {
    condition     = one(one(aws_s3_bucket_object_lock_configuration.this[0].rule).default_retention).mode == "COMPLIANCE"
    error_message = "Default retention must be COMPLIANCE."
  }
  assert {
    condition     = length(aws_s3_bucket_lifecycle_configuration.this.rule) == 2
    error_message = "Expected the multipart-abort rule plus one archive rule."
  }
  assert {
    condition     = contains([for t in aws_s3_bucket_lifecycle_configuration.this.rule[1].transition : t.storage_class], "DEEP_ARCHIVE")
    error_message = "The archive rule must transition to Deep Archive."
  }
}

run "rejects_unknown_storage_class" {
  command = plan

  variables {
    lifecycle_rules = [{ id = "bad", transitions = [{ days = 1, storage_class = "PUBLIC" }] }]
  }

  expect_failures = [var.lifecycle_rules]
}

run "rejects_bad_object_lock_mode" {
  command = plan

  variables {
    object_lock = { mode = "NONE", days = 1 }
  }

  expect_failures = [var.object_lock]
}
