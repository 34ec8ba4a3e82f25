# ---- Edge and ingress: Route 53, ACM, CloudFront + WAF, Shield, ALB (REST/WS), NLB (FIX/binary).
module "edge" {
  count  = local.f.edge ? 1 : 0
  source = "../edge"
  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  name              = local.name
  domain_name       = var.domain_name
  vpc_id            = module.network.vpc_id
  public_subnet_ids = module.network.public_subnet_ids
  fix_client_cidrs  = var.fix_client_cidrs
  log_kms_key_arn   = module.kms.key_arns["logs"]
  features = {
    cloudfront      = local.f.cloudfront
    shield_advanced = local.f.shield_advanced
    health_checks   = local.f.health_checks
    waf_logging     = local.f.waf_logging
  }
  rate_limit_per_5min = var.environment == "prod" ? 3000 : 1000
  deletion_protection = !var.throwaway
  force_destroy       = var.throwaway
  tags                = local.tags
}

# ---- Cognito user pool for retail logins.
module "cognito" {
  count  = local.f.cognito ? 1 : 0
  source = "../cognito"

  name                = "${local.name}-retail"
  domain_prefix       = "${local.name}-${local.account}"
  callback_urls       = coalesce(var.web_callback_urls, ["https://www.${var.domain_name}/callback"])
  logout_urls         = ["https://www.${var.domain_name}/"]
  mfa                 = var.environment == "prod" ? "ON" : "OPTIONAL"
  deletion_protection = !var.throwaway
  tags                = local.tags
}

# ---- API Gateway: partner market data API (API keys + usage plans) and the retail account API (Cognito).
module "api_gateway" {
  count  = local.f.api_gateway && local.f.cognito && local.f.edge ? 1 : 0
  source = "../api-gateway"

  name                  = "${local.name}-partner-api"
  backend_base_url      = "https://${module.edge[0].hosts.api}/api"
  cognito_user_pool_arn = module.cognito[0].user_pool_arn
  web_acl_arn           = module.edge[0].regional_web_acl_arn
  log_kms_key_arn       = module.kms.key_arns["logs"]
  tags                  = local.tags
}
