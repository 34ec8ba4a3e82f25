mock_provider "aws" {
  mock_resource "aws_organizations_organization" {
    defaults = {
      roots = [{ id = "r-abcd", arn = "arn:aws:organizations::123456789012:root/o-abcdefghij/r-abcd", name = "Root", policy_types = [] }]
    }
  }
}

variables {
  accounts = {
    security = { name = "castle-security", email = "aws-security@castle.example", ou = "security" }
    network  = { name = "castle-network", email = "aws-network@castle.example", ou = "infrastructure" }
    prod     = { name = "castle-prod", email = "aws-prod@castle.example", ou = "workloads_prod" }
    test     = { name = "castle-test", email = "aws-test@castle.example", ou = "workloads_sdlc" }
    dev      = { name = "castle-dev", email = "aws-dev@castle.example", ou = "workloads_sdlc" }
  }
}

run "organization_layout_and_scps" {
  command = plan

  assert {
    condition     = length(aws_organizations_organizational_unit.top) == 3 && length(aws_organizations_organizational_unit.workloads) == 2
    error_message = "OUs: Security, Infrastructure, Workloads with Prod and SDLC."
  }
  assert {
    condition     = aws_organizations_account.this["dev"].name == "castle-dev" && length(aws_organizations_account.this) == 5
    error_message = "All five accounts are created."
  }
  assert {
    condition     = toset(keys(output.scp_documents)) == toset(["deny-leave-organization", "protect-security-services", "region-allow-list", "require-imdsv2", "deny-public-s3"])
    error_message = "The five SCPs must exist."
  }
  assert {
    condition     = alltrue([for d in values(output.scp_documents) : length(d) <= 5120])
    error_message = "SCPs must fit the 5,120-character limit."
  }
  assert {
    condition     = toset(jsondecode(output.scp_documents["region-allow-list"]).Statement[0].Condition.StringNotEquals["aws:RequestedRegion"]) == toset(var.allowed_regions)
    error_message = "The region allow-list must carry the allowed regions."
  }
  assert {
    condition     = jsondecode(output.scp_documents["require-imdsv2"]).Statement[0].Condition.StringNotEquals["ec2:MetadataHttpTokens"] == "required"
    error_message = "The IMDSv2 SCP must deny launches without required tokens."
  }
  assert {
    condition     = length(aws_organizations_policy_attachment.scp) == 14
    error_message = "Each SCP is attached to its OUs (IMDSv2 not on Security)."
  }
}

run "rejects_unknown_ou" {
  command = plan

  variables {
    accounts = { x = { name = "x", email = "x@castle.example", ou = "Sandbox" } }
  }

  expect_failures = [var.accounts]
}
