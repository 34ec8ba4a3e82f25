output "environment" {
  description = "Everything other roots, the Helm values and operators need from this environment."
  value = {
    vpc_id             = module.environment.vpc_id
    engine             = module.environment.engine
    events_stream      = module.environment.events_stream
    archive_bucket     = module.environment.archive_bucket
    aurora_endpoint    = module.environment.aurora_endpoint
    redis_endpoint     = module.environment.redis_endpoint
    eks_cluster_name   = module.environment.eks_cluster_name
    workload_role_arns = module.environment.workload_role_arns
    target_group_arns  = module.environment.target_group_arns
    nlb_public_ips     = module.environment.nlb_public_ips
    alarm_topic_arn    = module.environment.alarm_topic_arn
    ecr_repository_url = module.environment.ecr_repository_url
  }
}
