terraform {
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100.0, < 6.0.0"
      # aws = the security (audit) account, delegated administrator of the security services.
      # aws.management = the organization management account, which alone can create the organization trail.
      configuration_aliases = [aws.management]
    }
  }
}
