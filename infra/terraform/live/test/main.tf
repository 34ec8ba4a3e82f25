locals {
  environment = "test"

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
  availability_zones = ["${var.region}a", "${var.region}b"]
  vpc_cidr           = "10.30.0.0/20"
  domain_name        = "test.castle-venue.net"
  features           = var.features

  # test: like dev (shortened), but with prod's journal volume type and two engine shards so that
  # cross-shard routing and failover drills run against the same topology as prod.
  sizing = {
    nat_gateway_mode        = "single"
    engine_shards           = ["a", "b"]
    engine_instance_type    = "c7i.2xlarge"
    engine_threads_per_core = 1
    engine_instances        = 2
    engine_journal_gb       = 50
    engine_journal_iops     = 3000
    engine_journal_type     = "io2"
    aurora_instance_class   = "db.t4g.medium"
    aurora_instances        = 2
    redis_node_type         = "cache.t4g.small"
    redis_shards            = 1
    redis_replicas          = 1
    kinesis_shards          = 1
    kinesis_on_demand       = false
    redshift_base_rpu       = 8
    redshift_max_rpu        = 16
    node_groups = {
      general = { instance_types = ["m7i.large"], min_size = 1, max_size = 4, desired_size = 2 }
    }
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
