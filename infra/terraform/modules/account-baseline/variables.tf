variable "name_prefix" {
  description = "Prefix for names, e.g. \"castle-prod\"."
  type        = string
}

variable "config_delivery" {
  description = "Where AWS Config delivers snapshots and history: the central bucket in the security account (live/security output config_bucket)."
  type = object({
    bucket_name = string
    kms_key_arn = optional(string)
  })
}

variable "ebs_kms_key_arn" {
  description = "Default KMS key for EBS volumes created in this account and region (account-level default encryption is switched on)."
  type        = string
}

variable "features" {
  description = "Per-service switches (all on in real accounts; an emulator may lack some APIs)."
  type = object({
    guardduty       = optional(bool, true)
    security_hub    = optional(bool, true)
    config          = optional(bool, true)
    access_analyzer = optional(bool, true)
    ebs_default_key = optional(bool, true)
    # Per-detector protection plans (S3, EKS, EBS malware, RDS, runtime). Separate from guardduty because
    # an emulator may create detectors but not report their features.
    guardduty_features = optional(bool, true)
    # Account-level S3 Block Public Access (S3 Control API).
    account_public_access_block = optional(bool, true)
  })
  default = {}
}

variable "config_rules" {
  description = "AWS managed Config rules evaluated in this account: rule name => source identifier (see the AWS Config managed rules list)."
  type        = map(string)
  default = {
    "s3-bucket-public-read-prohibited"       = "S3_BUCKET_PUBLIC_READ_PROHIBITED"
    "s3-bucket-ssl-requests-only"            = "S3_BUCKET_SSL_REQUESTS_ONLY"
    "s3-bucket-server-side-encryption"       = "S3_BUCKET_SERVER_SIDE_ENCRYPTION_ENABLED"
    "encrypted-volumes"                      = "ENCRYPTED_VOLUMES"
    "ec2-imdsv2-check"                       = "EC2_IMDSV2_CHECK"
    "rds-storage-encrypted"                  = "RDS_STORAGE_ENCRYPTED"
    "rds-multi-az"                           = "RDS_MULTI_AZ_SUPPORT"
    "elasticache-redis-cluster-automatic-bk" = "ELASTICACHE_REDIS_CLUSTER_AUTOMATIC_BACKUP_CHECK"
    "kinesis-stream-encrypted"               = "KINESIS_STREAM_ENCRYPTED"
    "cloudtrail-enabled"                     = "CLOUD_TRAIL_ENABLED"
    "guardduty-enabled-centralized"          = "GUARDDUTY_ENABLED_CENTRALIZED"
    "vpc-default-sg-closed"                  = "VPC_DEFAULT_SECURITY_GROUP_CLOSED"
    "iam-root-access-key-check"              = "IAM_ROOT_ACCESS_KEY_CHECK"
    "eks-secrets-encrypted"                  = "EKS_SECRETS_ENCRYPTED"
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

variable "create_autoscaling_service_linked_role" {
  description = "Create the Auto Scaling service-linked role (KMS key policies name it so that encrypted EBS launches work). Set false and import when the account already has it."
  type        = bool
  default     = true
}
