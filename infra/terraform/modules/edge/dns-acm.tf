resource "aws_route53_zone" "this" {
  name    = var.domain_name
  comment = "Castle ${var.name}"
  tags    = var.tags
}

locals {
  hosts = {
    api    = "api.${var.domain_name}"
    ws     = "ws.${var.domain_name}"
    fix    = "fix.${var.domain_name}"
    binary = "binary.${var.domain_name}"
    www    = "www.${var.domain_name}"
  }
}

# Regional certificate for the ALB (REST and WebSocket). FIX/binary certificates live with the gateways,
# which terminate TLS themselves so the NLB stays a pure TCP pass-through.
resource "aws_acm_certificate" "regional" {
  domain_name               = local.hosts.api
  subject_alternative_names = [local.hosts.ws]
  validation_method         = "DNS"
  key_algorithm             = "EC_prime256v1"
  tags                      = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_acm_certificate" "cloudfront" {
  count    = var.features.cloudfront ? 1 : 0
  provider = aws.us_east_1

  domain_name       = local.hosts.www
  validation_method = "DNS"
  key_algorithm     = "EC_prime256v1"
  tags              = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

locals {
  # Keyed by host name, known at plan time; the record values come from the certificates after creation.
  validation_domains = concat([local.hosts.api, local.hosts.ws], var.features.cloudfront ? [local.hosts.www] : [])
  validation_options = concat(
    tolist(aws_acm_certificate.regional.domain_validation_options),
    var.features.cloudfront ? tolist(aws_acm_certificate.cloudfront[0].domain_validation_options) : [],
  )
}

resource "aws_route53_record" "validation" {
  for_each = toset(local.validation_domains)

  zone_id         = aws_route53_zone.this.zone_id
  name            = one([for o in local.validation_options : o.resource_record_name if o.domain_name == each.key])
  type            = one([for o in local.validation_options : o.resource_record_type if o.domain_name == each.key])
  records         = [one([for o in local.validation_options : o.resource_record_value if o.domain_name == each.key])]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "regional" {
  certificate_arn         = aws_acm_certificate.regional.arn
  validation_record_fqdns = [for d in [local.hosts.api, local.hosts.ws] : aws_route53_record.validation[d].fqdn]
}

resource "aws_acm_certificate_validation" "cloudfront" {
  count    = var.features.cloudfront ? 1 : 0
  provider = aws.us_east_1

  certificate_arn         = aws_acm_certificate.cloudfront[0].arn
  validation_record_fqdns = [aws_route53_record.validation[local.hosts.www].fqdn]
}

resource "aws_route53_health_check" "api" {
  count = var.features.health_checks ? 1 : 0

  fqdn              = local.hosts.api
  port              = 443
  type              = "HTTPS"
  resource_path     = "/api/v1/health"
  failure_threshold = 3
  request_interval  = 10
  measure_latency   = true
  regions           = ["us-east-1", "eu-west-1", "ap-northeast-1"]
  tags              = merge(var.tags, { Name = "${var.name}-api" })
}

resource "aws_route53_health_check" "fix" {
  count = var.features.health_checks ? 1 : 0

  fqdn              = local.hosts.fix
  port              = var.ports.fix
  type              = "TCP"
  failure_threshold = 3
  request_interval  = 30
  regions           = ["us-east-1", "eu-west-1", "ap-northeast-1"]
  tags              = merge(var.tags, { Name = "${var.name}-fix" })
}

# api: failover. PRIMARY is the ALB while its health check passes; otherwise clients get the static
# maintenance page from CloudFront (SECONDARY) instead of timeouts.
resource "aws_route53_record" "api_primary" {
  zone_id         = aws_route53_zone.this.zone_id
  name            = local.hosts.api
  type            = "A"
  set_identifier  = var.features.health_checks && var.features.cloudfront ? "primary" : null
  health_check_id = var.features.health_checks && var.features.cloudfront ? aws_route53_health_check.api[0].id : null

  dynamic "failover_routing_policy" {
    for_each = var.features.health_checks && var.features.cloudfront ? ["PRIMARY"] : []
    content {
      type = failover_routing_policy.value
    }
  }

  alias {
    name                   = aws_lb.alb.dns_name
    zone_id                = aws_lb.alb.zone_id
    evaluate_target_health = true
  }
}

resource "aws_route53_record" "api_secondary" {
  count = var.features.health_checks && var.features.cloudfront ? 1 : 0

  zone_id        = aws_route53_zone.this.zone_id
  name           = local.hosts.api
  type           = "A"
  set_identifier = "maintenance"

  failover_routing_policy {
    type = "SECONDARY"
  }

  alias {
    name                   = aws_cloudfront_distribution.web[0].domain_name
    zone_id                = aws_cloudfront_distribution.web[0].hosted_zone_id
    evaluate_target_health = false
  }
}

resource "aws_route53_record" "ws" {
  zone_id = aws_route53_zone.this.zone_id
  name    = local.hosts.ws
  type    = "A"

  alias {
    name                   = aws_lb.alb.dns_name
    zone_id                = aws_lb.alb.zone_id
    evaluate_target_health = true
  }
}

resource "aws_route53_record" "nlb" {
  for_each = toset(["fix", "binary"])

  zone_id = aws_route53_zone.this.zone_id
  name    = local.hosts[each.key]
  type    = "A"

  alias {
    name                   = aws_lb.nlb.dns_name
    zone_id                = aws_lb.nlb.zone_id
    evaluate_target_health = true
  }
}

resource "aws_route53_record" "www" {
  count = var.features.cloudfront ? 1 : 0

  zone_id = aws_route53_zone.this.zone_id
  name    = local.hosts.www
  type    = "A"

  alias {
    name                   = aws_cloudfront_distribution.web[0].domain_name
    zone_id                = aws_cloudfront_distribution.web[0].hosted_zone_id
    evaluate_target_health = false
  }
}
