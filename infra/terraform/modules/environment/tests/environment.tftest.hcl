# The composed environment under mocked providers: dev and prod from the same module, sizes differ,
# invariants (encryption, placement, no public buckets) do not.
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
  mock_data "aws_elb_service_account" {
    defaults = { arn = "arn:aws:iam::156460612806:root" }
  }
  mock_data "aws_vpc" {
    defaults = { cidr_block = "10.20.0.0/20" }
  }
}

mock_provider "aws" {
  alias = "us_east_1"
}

variables {
  availability_zones = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
  config_delivery    = { bucket_name = "castle-security-config-111111111111" }
}

run "prod_full_size" {
  command = plan

  variables {
    environment = "prod"
    vpc_cidr    = "10.10.0.0/16"
    domain_name = "castle-venue.net"
    features    = { shield_advanced = true }
  }

  assert {
    condition     = length(module.engine) == 2
    error_message = "prod runs two engine shards."
  }
  assert {
    condition     = alltrue([for m in module.engine : m.placement_strategy == "cluster"])
    error_message = "Every engine group must be in a cluster placement group."
  }
  assert {
    condition     = module.network.nat_gateway_count == 3
    error_message = "prod has a NAT gateway per AZ."
  }
  assert {
    condition     = module.aurora[0].storage_encrypted
    error_message = "prod ledger must be encrypted."
  }
  assert {
    condition     = length(module.edge) == 1 && length(module.eks) == 1 && length(module.redis) == 1
    error_message = "prod has every tier."
  }
  assert {
    condition     = module.analytics.archive_object_lock_enabled
    error_message = "The archive bucket must be object-locked."
  }
}

run "dev_is_a_smaller_copy" {
  command = plan

  variables {
    environment        = "dev"
    availability_zones = ["eu-west-1a", "eu-west-1b"]
    vpc_cidr           = "10.20.0.0/20"
    domain_name        = "dev.castle-venue.net"
    throwaway          = true
    sizing = {
      nat_gateway_mode = "single"
      engine_shards    = ["a"]
      engine_instances = 1
      aurora_instances = 2
      redis_shards     = 1
      redis_replicas   = 1
      node_groups = {
        general = { instance_types = ["m7i.large"], min_size = 1, max_size = 4, desired_size = 2 }
      }
    }
  }

  assert {
    condition     = length(module.engine) == 1 && module.network.nat_gateway_count == 1
    error_message = "dev: one engine shard, one NAT gateway."
  }
  assert {
    condition     = alltrue([for m in module.engine : m.placement_strategy == "cluster"])
    error_message = "dev engines are placed like prod's."
  }
  assert {
    condition     = length(module.kms.key_arns) == 6
    error_message = "Same six data classes in every environment."
  }
}

run "prod_cannot_be_throwaway" {
  command = plan

  variables {
    environment = "prod"
    vpc_cidr    = "10.10.0.0/16"
    domain_name = "castle-venue.net"
    throwaway   = true
  }

  expect_failures = [var.throwaway]
}
