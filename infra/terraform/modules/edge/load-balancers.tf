data "aws_elb_service_account" "current" {}

module "lb_logs" {
  source = "../s3-bucket"

  name = "${var.name}-lb-access-logs"
  # ELB access log delivery supports SSE-S3 only (not SSE-KMS with a customer key).
  kms_key_arn   = null
  force_destroy = var.force_destroy
  lifecycle_rules = [{
    id              = "expire-access-logs"
    expiration_days = 400
    transitions     = [{ days = 30, storage_class = "GLACIER_IR" }]
  }]
  policy_documents = [data.aws_iam_policy_document.lb_logs.json]
  tags             = var.tags
}

data "aws_iam_policy_document" "lb_logs" {
  statement {
    sid       = "ElbAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["arn:aws:s3:::${var.name}-lb-access-logs/*"]
    principals {
      type        = "AWS"
      identifiers = [data.aws_elb_service_account.current.arn]
    }
  }
}

# ---- ALB: REST and WebSocket (gateway-rest pods registered by the AWS Load Balancer Controller
# through TargetGroupBinding objects in deploy/helm/castle).
resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "Public HTTPS for the REST/WebSocket gateway"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-alb" })
}

resource "aws_vpc_security_group_ingress_rule" "alb" {
  for_each = toset(["80", "443"])

  security_group_id = aws_security_group.alb.id
  description       = each.key == "80" ? "HTTP (redirected to HTTPS)" : "HTTPS"
  ip_protocol       = "tcp"
  from_port         = tonumber(each.key)
  to_port           = tonumber(each.key)
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "alb" {
  security_group_id = aws_security_group.alb.id
  description       = "To targets inside the VPC"
  ip_protocol       = "tcp"
  from_port         = 1024
  to_port           = 65535
  cidr_ipv4         = data.aws_vpc.this.cidr_block
}

data "aws_vpc" "this" {
  id = var.vpc_id
}

resource "aws_lb" "alb" {
  name                       = "${var.name}-rest"
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = var.public_subnet_ids
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  desync_mitigation_mode     = "strictest"
  enable_http2               = true
  # WebSocket market data streams are long-lived: keep idle connections for an hour (clients ping).
  idle_timeout               = 3600
  enable_deletion_protection = var.deletion_protection

  access_logs {
    bucket  = module.lb_logs.id
    prefix  = "alb"
    enabled = true
  }

  tags = var.tags
}

resource "aws_lb_target_group" "rest" {
  name                 = "${var.name}-rest"
  port                 = 8080
  protocol             = "HTTP"
  protocol_version     = "HTTP1"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  health_check {
    path                = "/api/v1/health"
    matcher             = "200"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = var.tags
}

# The gateway serves WebSocket streams on its REST port at /api/v1/ws; a target group of its own
# gives the long-lived connections sticky routing and a longer drain on deploys than REST needs.
resource "aws_lb_target_group" "ws" {
  name                 = "${var.name}-ws"
  port                 = 8080
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 120

  health_check {
    path    = "/api/v1/health"
    matcher = "200"
  }

  stickiness {
    type            = "lb_cookie"
    enabled         = true
    cookie_duration = 86400
  }

  tags = var.tags
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.alb.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"
    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }

  tags = var.tags
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.alb.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = aws_acm_certificate_validation.regional.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.rest.arn
  }

  tags = var.tags
}

resource "aws_lb_listener_rule" "ws" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 10

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.ws.arn
  }

  condition {
    host_header {
      values = [local.hosts.ws]
    }
  }

  tags = var.tags
}

# ---- NLB: FIX and binary order entry. Static Elastic IPs per AZ so institutional clients can allow-list us;
# TCP pass-through keeps TLS end-to-end to the gateways and adds no proxy hop.
resource "aws_eip" "nlb" {
  count = length(var.public_subnet_ids)

  domain = "vpc"
  tags   = merge(var.tags, { Name = "${var.name}-nlb-${count.index}" })
}

resource "aws_security_group" "nlb" {
  name        = "${var.name}-nlb"
  description = "FIX and binary order entry from allow-listed client networks"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-nlb" })
}

resource "aws_vpc_security_group_ingress_rule" "nlb" {
  for_each = {
    for p in setproduct(["fix", "binary"], var.fix_client_cidrs) : "${p[0]}-${p[1]}" => { port = var.ports[p[0]], cidr = p[1] }
  }

  security_group_id = aws_security_group.nlb.id
  description       = "order entry (${split("-", each.key)[0]})"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = each.value.cidr
}

resource "aws_vpc_security_group_egress_rule" "nlb" {
  security_group_id = aws_security_group.nlb.id
  description       = "To gateway pods"
  ip_protocol       = "tcp"
  from_port         = 1024
  to_port           = 65535
  cidr_ipv4         = data.aws_vpc.this.cidr_block
}

resource "aws_lb" "nlb" {
  name                             = "${var.name}-orders"
  load_balancer_type               = "network"
  internal                         = false
  security_groups                  = [aws_security_group.nlb.id]
  enable_cross_zone_load_balancing = false
  enable_deletion_protection       = var.deletion_protection

  dynamic "subnet_mapping" {
    for_each = var.public_subnet_ids
    content {
      subnet_id     = subnet_mapping.value
      allocation_id = aws_eip.nlb[subnet_mapping.key].id
    }
  }

  access_logs {
    bucket  = module.lb_logs.id
    prefix  = "nlb"
    enabled = true
  }

  tags = var.tags
}

resource "aws_lb_target_group" "order_entry" {
  for_each = toset(["fix", "binary"])

  name                 = "${var.name}-${each.key}"
  port                 = var.ports[each.key]
  protocol             = "TCP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  preserve_client_ip   = "true"
  deregistration_delay = 300
  # Sessions are sticky by nature (one TCP connection per FIX session); let them drain on deploys.
  connection_termination = false

  health_check {
    protocol            = "TCP"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  tags = var.tags
}

resource "aws_lb_listener" "order_entry" {
  for_each = toset(["fix", "binary"])

  load_balancer_arn = aws_lb.nlb.arn
  port              = var.ports[each.key]
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.order_entry[each.key].arn
  }

  tags = var.tags
}
