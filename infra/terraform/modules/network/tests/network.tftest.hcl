mock_provider "aws" {
  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
}

variables {
  name                = "castle-test"
  cidr_block          = "10.30.0.0/16"
  availability_zones  = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
  interface_endpoints = ["kms", "kinesis-streams"]
  flow_logs = {
    kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
  }
}

run "subnets_across_azs_and_nat_per_az" {
  command = plan

  assert {
    condition     = length(aws_subnet.public) == 3 && length(aws_subnet.private) == 3 && length(aws_subnet.data) == 3
    error_message = "One subnet per tier per AZ."
  }
  assert {
    condition     = toset([for s in aws_subnet.private : s.availability_zone]) == toset(var.availability_zones)
    error_message = "Private subnets must cover every AZ."
  }
  assert {
    condition     = length(aws_nat_gateway.this) == 3
    error_message = "per_az mode needs one NAT gateway per AZ."
  }
  assert {
    condition     = aws_subnet.private["eu-west-1a"].cidr_block == "10.30.64.0/20" && aws_subnet.data["eu-west-1c"].cidr_block == "10.30.160.0/20"
    error_message = "Subnet layout: blocks 4-7 private, 8-11 data."
  }
  assert {
    condition     = alltrue([for s in aws_subnet.public : s.map_public_ip_on_launch == false])
    error_message = "No automatic public IPs, even in public subnets."
  }
  assert {
    condition     = length(aws_vpc_endpoint.interface) == 2 && length(aws_vpc_endpoint.gateway) == 2
    error_message = "Expected the requested interface endpoints and both gateway endpoints."
  }
  assert {
    condition     = aws_cloudwatch_log_group.flow_logs[0].kms_key_id == var.flow_logs.kms_key_arn
    error_message = "Flow logs must be encrypted."
  }
}

run "single_nat_for_small_environments" {
  command = plan

  variables {
    nat_gateway_mode = "single"
  }

  assert {
    condition     = length(aws_nat_gateway.this) == 1 && length(aws_route.private_nat) == 3
    error_message = "single mode: one NAT gateway, still a default route in every private route table."
  }
}

run "rejects_tiny_vpc" {
  command = plan

  variables {
    cidr_block = "10.30.0.0/24"
  }

  expect_failures = [var.cidr_block]
}
