resource "aws_organizations_organization" "this" {
  feature_set = "ALL"

  enabled_policy_types = ["SERVICE_CONTROL_POLICY", "TAG_POLICY"]

  aws_service_access_principals = [
    "cloudtrail.amazonaws.com",
    "config.amazonaws.com",
    "config-multiaccountsetup.amazonaws.com",
    "guardduty.amazonaws.com",
    "malware-protection.guardduty.amazonaws.com",
    "securityhub.amazonaws.com",
    "ram.amazonaws.com",
    "sso.amazonaws.com",
    "account.amazonaws.com",
  ]
}

locals {
  root_id = aws_organizations_organization.this.roots[0].id
}

resource "aws_organizations_organizational_unit" "top" {
  for_each = toset(["Security", "Infrastructure", "Workloads"])

  name      = each.key
  parent_id = local.root_id
  tags      = var.tags
}

resource "aws_organizations_organizational_unit" "workloads" {
  for_each = toset(["Prod", "SDLC"])

  name      = each.key
  parent_id = aws_organizations_organizational_unit.top["Workloads"].id
  tags      = var.tags
}

locals {
  ou_ids = {
    security       = aws_organizations_organizational_unit.top["Security"].id
    infrastructure = aws_organizations_organizational_unit.top["Infrastructure"].id
    workloads_prod = aws_organizations_organizational_unit.workloads["Prod"].id
    workloads_sdlc = aws_organizations_organizational_unit.workloads["SDLC"].id
  }
}

resource "aws_organizations_account" "this" {
  for_each = var.accounts

  name              = each.value.name
  email             = each.value.email
  parent_id         = local.ou_ids[each.value.ou]
  role_name         = "OrganizationAccountAccessRole"
  close_on_deletion = false
  tags              = merge(var.tags, { Account = each.key })

  # AWS does not return role_name after creation; an account is never recreated by Terraform.
  lifecycle {
    ignore_changes  = [role_name]
    prevent_destroy = true
  }
}

locals {
  template_vars = {
    allowed_regions  = var.allowed_regions
    exempt_role_arns = var.exempt_role_arns
  }

  # Policy file => where it is attached. SCPs never apply to the management account itself.
  scps = {
    "deny-leave-organization"   = { description = "Member accounts cannot leave the organization", targets = ["security", "infrastructure", "workloads"] }
    "protect-security-services" = { description = "CloudTrail, GuardDuty, Config and Security Hub cannot be disabled", targets = ["security", "infrastructure", "workloads"] }
    "region-allow-list"         = { description = "Only the allowed regions can be used", targets = ["security", "infrastructure", "workloads"] }
    "require-imdsv2"            = { description = "EC2 instances must require IMDSv2", targets = ["infrastructure", "workloads"] }
    "deny-public-s3"            = { description = "S3 data cannot be made public", targets = ["security", "infrastructure", "workloads"] }
  }

  scp_documents = {
    for name, _ in local.scps : name => jsonencode(jsondecode(templatefile("${path.module}/policies/${name}.json.tftpl", local.template_vars)))
  }

  target_ids = {
    security       = aws_organizations_organizational_unit.top["Security"].id
    infrastructure = aws_organizations_organizational_unit.top["Infrastructure"].id
    workloads      = aws_organizations_organizational_unit.top["Workloads"].id
  }

  attachments = merge([
    for name, p in local.scps : { for t in p.targets : "${name}|${t}" => { policy = name, target = t } }
  ]...)
}

resource "aws_organizations_policy" "scp" {
  for_each = local.scps

  name        = each.key
  description = each.value.description
  type        = "SERVICE_CONTROL_POLICY"
  content     = local.scp_documents[each.key]
  tags        = var.tags
}

resource "aws_organizations_policy_attachment" "scp" {
  for_each = local.attachments

  policy_id = aws_organizations_policy.scp[each.value.policy].id
  target_id = local.target_ids[each.value.target]
}

# Security services are administered from the security account, not from the management account.
resource "aws_organizations_delegated_administrator" "this" {
  for_each = toset(["config.amazonaws.com", "config-multiaccountsetup.amazonaws.com"])

  account_id        = aws_organizations_account.this[var.delegated_admin_account].id
  service_principal = each.value
}

resource "aws_guardduty_organization_admin_account" "this" {
  admin_account_id = aws_organizations_account.this[var.delegated_admin_account].id
  depends_on       = [aws_organizations_organization.this]
}

resource "aws_securityhub_organization_admin_account" "this" {
  admin_account_id = aws_organizations_account.this[var.delegated_admin_account].id
  depends_on       = [aws_organizations_organization.this]
}
