# Remote state: S3 (versioned, KMS-encrypted, in the management account's state bucket) with a DynamoDB lock
# table. The values are in backend.hcl next to this file:
#
#   terraform init -backend-config=backend.hcl
#
# For offline checks use `terraform init -backend=false`; infra/test.sh points the same backend at moto.
terraform {
  backend "s3" {}
}
