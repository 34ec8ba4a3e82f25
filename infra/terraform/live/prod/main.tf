locals {
  environment = "prod"

  # The transit gateway carries routes to the other environments' VPCs and the shared services.
  routed_cidrs = ["10.0.0.0/8"]
}

data "aws_ec2_transit_gateway" "shared" {
  count = var.transit_gateway_name == null ? 0 : 1

  filter {
    name   = "tag:Name"
    values = [var.transit_gateway_name]
  }
  filter {
    name   = "state"
    values = ["available"]
  }
}

data "aws_ec2_transit_gateway_multicast_domain" "feed" {
  count = var.transit_gateway_name == null ? 0 : 1

  filter {
    name   = "transit-gateway-id"
    values = [data.aws_ec2_transit_gateway.shared[0].id]
  }
}

module "environment" {
  source = "../../modules/environment"
  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  environment        = local.environment
  availability_zones = ["${var.region}a", "${var.region}b", "${var.region}c"]
  vpc_cidr           = "10.10.0.0/16"
  domain_name        = "castle-venue.net"
  features           = merge({ shield_advanced = true }, var.features)

  # prod: three AZs, the module's full-size defaults (two engine shards of
  # two metal instances each in cluster placement groups, three-node Aurora, 3x3 Redis, 8 Kinesis shards),
  # and Shield Advanced.
  sizing = {
    engine_instance_type = "c7i.metal-24xl"
  }

  engine_ami_id = var.engine_ami_id
  transit_gateway = var.transit_gateway_name == null ? null : {
    id                  = data.aws_ec2_transit_gateway.shared[0].id
    routed_cidrs        = local.routed_cidrs
    multicast_domain_id = data.aws_ec2_transit_gateway_multicast_domain.feed[0].id
  }
  config_delivery = {
    bucket_name = "castle-security-config-${var.security_account_id}"
    kms_key_arn = var.config_kms_key_arn
  }
  admin_role_arns                        = var.admin_role_arns
  fix_client_cidrs                       = var.fix_client_cidrs
  alarm_emails                           = var.alarm_emails
  throwaway                              = var.throwaway
  create_autoscaling_service_linked_role = var.create_autoscaling_service_linked_role
}
