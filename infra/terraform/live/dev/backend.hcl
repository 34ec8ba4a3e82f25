bucket         = "castle-terraform-state-eu-west-1"
key            = "workloads/dev/terraform.tfstate"
region         = "eu-west-1"
dynamodb_table = "castle-terraform-locks"
encrypt        = true
kms_key_id     = "alias/castle-terraform-state"
