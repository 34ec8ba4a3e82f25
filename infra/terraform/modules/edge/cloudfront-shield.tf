# ---- Static web page assets: private bucket, read only by this distribution through an origin access control.
module "web_assets" {
  count  = var.features.cloudfront ? 1 : 0
  source = "../s3-bucket"

  name = "${var.name}-web-assets"
  # Public web content: SSE-S3 avoids a KMS decrypt on every cache miss and a key policy for CloudFront.
  kms_key_arn      = null
  force_destroy    = var.force_destroy
  policy_documents = [data.aws_iam_policy_document.web_assets[0].json]
  tags             = var.tags
}

data "aws_iam_policy_document" "web_assets" {
  count = var.features.cloudfront ? 1 : 0

  statement {
    sid       = "CloudFrontRead"
    actions   = ["s3:GetObject"]
    resources = ["arn:aws:s3:::${var.name}-web-assets/*"]
    principals {
      type        = "Service"
      identifiers = ["cloudfront.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "AWS:SourceArn"
      values   = [aws_cloudfront_distribution.web[0].arn]
    }
  }
}

resource "aws_cloudfront_origin_access_control" "web" {
  count = var.features.cloudfront ? 1 : 0

  name                              = "${var.name}-web-assets"
  description                       = "Castle web assets"
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

locals {
  # AWS managed policies (stable, documented ids).
  cache_policy_caching_optimized   = "658327ea-f89d-4fab-a63d-7e88639e58f6"
  response_headers_security_policy = "67f7725c-6f97-4210-82d7-5512b31e9d03"
}

resource "aws_cloudfront_distribution" "web" {
  count = var.features.cloudfront ? 1 : 0

  enabled             = true
  comment             = "Castle ${var.name} web assets"
  aliases             = [local.hosts.www]
  default_root_object = "index.html"
  http_version        = "http2and3"
  is_ipv6_enabled     = true
  price_class         = "PriceClass_100"
  web_acl_id          = aws_wafv2_web_acl.cloudfront[0].arn

  origin {
    origin_id                = "web-assets"
    domain_name              = "${var.name}-web-assets.s3.amazonaws.com"
    origin_access_control_id = aws_cloudfront_origin_access_control.web[0].id
  }

  default_cache_behavior {
    target_origin_id           = "web-assets"
    viewer_protocol_policy     = "redirect-to-https"
    allowed_methods            = ["GET", "HEAD", "OPTIONS"]
    cached_methods             = ["GET", "HEAD"]
    compress                   = true
    cache_policy_id            = local.cache_policy_caching_optimized
    response_headers_policy_id = local.response_headers_security_policy
  }

  restrictions {
    geo_restriction {
      restriction_type = "blacklist"
      locations        = var.blocked_countries
    }
  }

  viewer_certificate {
    acm_certificate_arn      = aws_acm_certificate_validation.cloudfront[0].certificate_arn
    ssl_support_method       = "sni-only"
    minimum_protocol_version = "TLSv1.2_2021"
  }

  tags = var.tags
}

# ---- Shield Advanced (Shield Standard is always on at no cost). Requires the account subscription,
# which has a one-year commitment, so it is enabled per environment (prod only by default).
resource "aws_shield_subscription" "this" {
  count = var.features.shield_advanced ? 1 : 0

  auto_renew = "ENABLED"
}

locals {
  shield_targets = var.features.shield_advanced ? merge(
    {
      alb  = aws_lb.alb.arn
      zone = aws_route53_zone.this.arn
    },
    { for i, e in aws_eip.nlb : "nlb-eip-${i}" => "arn:aws:ec2:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:eip-allocation/${e.allocation_id}" },
    var.features.cloudfront ? { cloudfront = aws_cloudfront_distribution.web[0].arn } : {},
  ) : {}
}

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

resource "aws_shield_protection" "this" {
  for_each = local.shield_targets

  name         = "${var.name}-${each.key}"
  resource_arn = each.value
  tags         = var.tags

  depends_on = [aws_shield_subscription.this]
}
