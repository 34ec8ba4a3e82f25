resource "aws_ec2_transit_gateway" "this" {
  description                     = "${var.name}: joins the Castle workload VPCs"
  amazon_side_asn                 = var.amazon_side_asn
  auto_accept_shared_attachments  = "enable"
  default_route_table_association = "enable"
  default_route_table_propagation = "enable"
  dns_support                     = "enable"
  vpn_ecmp_support                = "enable"
  multicast_support               = var.multicast_domain == null ? "disable" : "enable"

  tags = merge(var.tags, { Name = var.name })
}

resource "aws_ec2_transit_gateway_multicast_domain" "feed" {
  count = var.multicast_domain == null ? 0 : 1

  transit_gateway_id              = aws_ec2_transit_gateway.this.id
  igmpv2_support                  = var.multicast_domain.igmpv2_support ? "enable" : "disable"
  static_sources_support          = var.multicast_domain.static_sources_support ? "enable" : "disable"
  auto_accept_shared_associations = var.multicast_domain.auto_accept_shared_associations ? "enable" : "disable"

  tags = merge(var.tags, { Name = "${var.name}-marketdata-feed" })
}

resource "aws_ram_resource_share" "this" {
  count = length(var.share_with_principals) > 0 ? 1 : 0

  name                      = "${var.name}-transit-gateway"
  allow_external_principals = false
  tags                      = var.tags
}

resource "aws_ram_resource_association" "tgw" {
  count = length(var.share_with_principals) > 0 ? 1 : 0

  resource_arn       = aws_ec2_transit_gateway.this.arn
  resource_share_arn = aws_ram_resource_share.this[0].arn
}

resource "aws_ram_resource_association" "multicast" {
  count = length(var.share_with_principals) > 0 && var.multicast_domain != null ? 1 : 0

  resource_arn       = aws_ec2_transit_gateway_multicast_domain.feed[0].arn
  resource_share_arn = aws_ram_resource_share.this[0].arn
}

resource "aws_ram_principal_association" "this" {
  for_each = toset(var.share_with_principals)

  principal          = each.value
  resource_share_arn = aws_ram_resource_share.this[0].arn
}
