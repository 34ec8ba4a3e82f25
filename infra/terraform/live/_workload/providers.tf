locals {
  # Services this root calls. Listed so that an emulator endpoint (infra/test.sh) can replace all of them.
  emulated_services = [
    "accessanalyzer", "acm", "apigateway", "athena", "autoscaling", "cloudfront", "cloudwatch", "cognitoidp",
    "configservice", "dynamodb", "ec2", "ecr", "eks", "elasticache", "elbv2", "firehose", "glue", "guardduty", "iam",
    "kinesis", "kms", "logs", "ram", "rds", "redshiftserverless", "route53", "s3", "s3control", "secretsmanager",
    "securityhub", "shield", "sns", "sts", "wafv2", "xray",
  ]
  provider_endpoints = var.aws_endpoint_url == null ? [] : [{ for s in local.emulated_services : s => var.aws_endpoint_url }]
}

provider "aws" {
  region = var.region

  dynamic "assume_role" {
    for_each = var.assume_role_arn == null ? [] : [var.assume_role_arn]
    content {
      role_arn     = assume_role.value
      session_name = "castle-terraform-${local.environment}"
    }
  }

  # Emulator mode (tests only): every service at one local endpoint, path-style S3, no metadata or account checks.
  dynamic "endpoints" {
    for_each = local.provider_endpoints
    content {
      accessanalyzer     = endpoints.value.accessanalyzer
      acm                = endpoints.value.acm
      apigateway         = endpoints.value.apigateway
      athena             = endpoints.value.athena
      autoscaling        = endpoints.value.autoscaling
      cloudfront         = endpoints.value.cloudfront
      cloudwatch         = endpoints.value.cloudwatch
      cognitoidp         = endpoints.value.cognitoidp
      configservice      = endpoints.value.configservice
      dynamodb           = endpoints.value.dynamodb
      ec2                = endpoints.value.ec2
      ecr                = endpoints.value.ecr
      eks                = endpoints.value.eks
      elasticache        = endpoints.value.elasticache
      elbv2              = endpoints.value.elbv2
      firehose           = endpoints.value.firehose
      glue               = endpoints.value.glue
      guardduty          = endpoints.value.guardduty
      iam                = endpoints.value.iam
      kinesis            = endpoints.value.kinesis
      kms                = endpoints.value.kms
      logs               = endpoints.value.logs
      ram                = endpoints.value.ram
      rds                = endpoints.value.rds
      redshiftserverless = endpoints.value.redshiftserverless
      route53            = endpoints.value.route53
      s3                 = endpoints.value.s3
      s3control          = endpoints.value.s3control
      secretsmanager     = endpoints.value.secretsmanager
      securityhub        = endpoints.value.securityhub
      shield             = endpoints.value.shield
      sns                = endpoints.value.sns
      sts                = endpoints.value.sts
      wafv2              = endpoints.value.wafv2
      xray               = endpoints.value.xray
    }
  }
  s3_use_path_style           = var.aws_endpoint_url != null
  skip_metadata_api_check     = var.aws_endpoint_url != null
  skip_region_validation      = var.aws_endpoint_url != null
  skip_credentials_validation = var.aws_endpoint_url != null

  default_tags {
    tags = {
      Project     = "castle"
      Environment = local.environment
      ManagedBy   = "terraform"
      Repository  = "castle/infra/terraform/live/${local.environment}"
    }
  }
}

# CloudFront certificates and CLOUDFRONT-scope WAF.
provider "aws" {
  alias  = "us_east_1"
  region = "us-east-1"

  dynamic "assume_role" {
    for_each = var.assume_role_arn == null ? [] : [var.assume_role_arn]
    content {
      role_arn     = assume_role.value
      session_name = "castle-terraform-${local.environment}"
    }
  }

  dynamic "endpoints" {
    for_each = local.provider_endpoints
    content {
      acm        = endpoints.value.acm
      cloudfront = endpoints.value.cloudfront
      iam        = endpoints.value.iam
      sts        = endpoints.value.sts
      wafv2      = endpoints.value.wafv2
    }
  }
  s3_use_path_style           = var.aws_endpoint_url != null
  skip_metadata_api_check     = var.aws_endpoint_url != null
  skip_region_validation      = var.aws_endpoint_url != null
  skip_credentials_validation = var.aws_endpoint_url != null

  default_tags {
    tags = {
      Project     = "castle"
      Environment = local.environment
      ManagedBy   = "terraform"
    }
  }
}
