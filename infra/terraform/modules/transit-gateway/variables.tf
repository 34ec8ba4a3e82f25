variable "name" {
  description = "Name of the transit gateway, e.g. \"castle-core\"."
  type        = string
}

variable "amazon_side_asn" {
  description = "Private ASN of the transit gateway."
  type        = number
  default     = 64512

  validation {
    condition     = (var.amazon_side_asn >= 64512 && var.amazon_side_asn <= 65534) || (var.amazon_side_asn >= 4200000000 && var.amazon_side_asn <= 4294967294)
    error_message = "amazon_side_asn must be a private ASN."
  }
}

variable "multicast_domain" {
  description = <<-EOT
    Multicast domain for the MoldUDP64/ITCH market data feed. igmpv2 lets receivers join by IGMP;
    sources (the marketdata publishers) are registered statically by ENI at boot, as AWS requires.
    null disables multicast.
  EOT
  type = object({
    igmpv2_support                  = optional(bool, true)
    static_sources_support          = optional(bool, true)
    auto_accept_shared_associations = optional(bool, true)
  })
  default = {}
}

variable "share_with_principals" {
  description = "Organization ARN, OU ARNs or account ids the transit gateway (and multicast domain) are shared with through AWS RAM."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
