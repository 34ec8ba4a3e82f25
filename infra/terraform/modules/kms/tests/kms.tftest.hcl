mock_provider "aws" {
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
}

variables {
  name_prefix = "castle-test"
  data_classes = {
    trading = { description = "journal" }
    ledger  = { description = "settlement" }
    logs    = { description = "logs", service_principals = ["logs.eu-west-1.amazonaws.com"] }
  }
}

run "one_rotating_key_per_data_class" {
  command = apply

  assert {
    condition     = length(aws_kms_key.this) == 3 && length(aws_kms_alias.this) == 3
    error_message = "Expected one key and one alias per data class."
  }
  assert {
    condition     = alltrue([for k in aws_kms_key.this : k.enable_key_rotation])
    error_message = "Every key must rotate."
  }
  assert {
    condition     = output.alias_names["ledger"] == "alias/castle-test/ledger"
    error_message = "Alias naming must be alias/<prefix>/<class>."
  }
  assert {
    condition     = aws_kms_key.this["trading"].deletion_window_in_days == 30
    error_message = "Default deletion window is 30 days."
  }
}

run "rejects_bad_class_name" {
  command = plan

  variables {
    data_classes = { "Bad_Name" = { description = "x" } }
  }

  expect_failures = [var.data_classes]
}
