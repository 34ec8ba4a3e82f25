# Offline test only (infra/test.sh): the dev environment against moto on loopback.
# Every switch below turns off a part moto cannot emulate; infra/README.md says why for each one.
# Nothing else differs from a real dev apply.
transit_gateway_name                   = null
security_account_id                    = "123456789012"
throwaway                              = true
create_autoscaling_service_linked_role = true

features = {
  eks              = false
  redis            = false
  redshift         = false
  security_hub     = false
  access_analyzer  = false
  xray             = false
  shield_advanced  = false
  placement_groups = false
  ebs_default_key  = false

  guardduty_features = false
  account_s3_block   = false
}
