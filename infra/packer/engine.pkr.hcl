# Castle engine AMI: Debian 12 with the latency tuning of scripts/ baked in and verified after a reboot.
#
#   packer init .        (packer >= 1.10, fetches the amazon plugin pinned below)
#   packer build -var castle_binary=../../target/release/castle -var isolated_cpus=2-47 ... .
#
# The tuning depends on the CPU layout, so an AMI is built for one instance size: set housekeeping_cpus and
# isolated_cpus to match the instance type the engine module launches (see README.md).

# packer>=1.7:begin (infra/test.sh strips this block for Debian's packer 1.6.6, which predates plugins)
packer {
  required_version = ">= 1.10.0"
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = "~> 1.3"
    }
  }
}
# packer>=1.7:end

variable "region" {
  type        = string
  description = "Region the AMI is built in (and registered to)."
  default     = "eu-west-1"
}

variable "build_instance_type" {
  type        = string
  description = "Instance type of the build. Use the engine's family so ENA/PHC checks run on the same hardware."
  default     = "c7i.2xlarge"
}

variable "subnet_id" {
  type        = string
  description = "Private subnet for the build instance (reached through SSM, no public IP). Empty = default VPC."
  default     = ""
}

variable "kms_key_id" {
  type        = string
  description = "KMS key (trading data class) encrypting the AMI's snapshots. Empty = the account's default EBS key."
  default     = ""
}

variable "castle_binary" {
  type        = string
  description = "Path of the release build of the castle binary (cargo build --release -p castle)."
  default     = "../../target/release/castle"
}

variable "housekeeping_cpus" {
  type        = string
  description = "CPUs left to the kernel, IRQs and system services."
  default     = "0-1"
}

variable "isolated_cpus" {
  type        = string
  description = "CPUs isolated for the engine threads."
  default     = "2-7"

  # packer>=1.7:begin (1.6.6 evaluates validation blocks without functions)
  validation {
    condition     = can(regex("^[0-9]+(?:-[0-9]+)?(?:,[0-9]+(?:-[0-9]+)?)*$", var.isolated_cpus))
    error_message = "The isolated_cpus value must be a CPU list such as 2-7 or 2,3,6-7."
  }
  # packer>=1.7:end
}

variable "hugepages_2m" {
  type        = number
  description = "2 MiB hugepages reserved for the engine."
  default     = 1024
}

variable "ami_users" {
  type        = list(string)
  description = "Workload account ids the AMI is shared with."
  default     = []
}

locals {
  timestamp = formatdate("YYYYMMDD-hhmmss", timestamp())
  tuning_env = [
    "HOUSEKEEPING_CPUS=${var.housekeeping_cpus}",
    "ISOLATED_CPUS=${var.isolated_cpus}",
    "HUGEPAGES_2M=${var.hugepages_2m}",
    "CASTLE_BINARY=/tmp/castle",
    "DEBIAN_FRONTEND=noninteractive",
  ]
}

source "amazon-ebs" "engine" {
  region        = var.region
  instance_type = var.build_instance_type
  subnet_id     = var.subnet_id
  ssh_username  = "admin"
  ssh_interface = "session_manager"
  communicator  = "ssh"

  ami_name        = "castle-engine-${local.timestamp}"
  ami_description = "Castle matching engine, isolated CPUs ${var.isolated_cpus}"
  ami_users       = var.ami_users
  ena_support     = true
  sriov_support   = true
  encrypt_boot    = true
  kms_key_id      = var.kms_key_id

  # packer>=1.7:begin
  imds_support = "v2.0"
  # The organization SCP denies RunInstances without IMDSv2, the build instance included.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
  # packer>=1.7:end

  temporary_iam_instance_profile_policy_document {
    Version = "2012-10-17"
    Statement {
      Effect   = "Allow"
      Action   = ["ssm:UpdateInstanceInformation", "ssmmessages:*", "ec2messages:*"]
      Resource = ["*"]
    }
  }

  source_ami_filter {
    filters = {
      name                = "debian-12-amd64-*"
      architecture        = "x86_64"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["136693071363"] # Debian
    most_recent = true
  }

  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_size           = 16
    volume_type           = "gp3"
    throughput            = 125
    iops                  = 3000
    encrypted             = true
    delete_on_termination = true
  }

  run_tags = {
    Name    = "castle-engine-ami-build"
    Project = "castle"
  }
  tags = {
    Name            = "castle-engine-${local.timestamp}"
    Project         = "castle"
    IsolatedCpus    = var.isolated_cpus
    HousekeepingCpu = var.housekeeping_cpus
    SourceAmi       = "{{ .SourceAMI }}"
  }
}

build {
  name    = "castle-engine"
  sources = ["source.amazon-ebs.engine"]

  provisioner "file" {
    source      = "scripts"
    destination = "/tmp/castle-provision"
  }

  provisioner "file" {
    source      = var.castle_binary
    destination = "/tmp/castle"
  }

  provisioner "shell" {
    environment_vars = local.tuning_env
    execute_command  = "sudo -E bash -euo pipefail '{{ .Path }}'"
    inline = [
      "apt-get update",
      "apt-get -y dist-upgrade",
      "bash /tmp/castle-provision/10-kernel-cmdline.sh",
      "bash /tmp/castle-provision/20-hugepages.sh",
      "bash /tmp/castle-provision/30-irq-affinity.sh",
      "bash /tmp/castle-provision/40-sysctl.sh",
      "bash /tmp/castle-provision/50-tuned.sh",
      "bash /tmp/castle-provision/60-chrony.sh",
      "bash /tmp/castle-provision/70-ena.sh",
      "bash /tmp/castle-provision/80-io-uring.sh",
      "bash /tmp/castle-provision/90-castle-service.sh",
    ]
  }

  # The command line, hugepages and ENA module options take effect only after a reboot.
  provisioner "shell" {
    execute_command   = "sudo -E bash '{{ .Path }}'"
    inline            = ["systemctl reboot"]
    expect_disconnect = true
  }

  # Fails the build unless every tuning is in effect on the rebooted instance.
  provisioner "shell" {
    pause_before    = "60s"
    execute_command = "sudo -E bash '{{ .Path }}'"
    inline          = ["/usr/local/sbin/castle-verify-tuning"]
  }

  provisioner "shell" {
    execute_command = "sudo -E bash '{{ .Path }}'"
    inline          = ["rm -rf /tmp/castle-provision /tmp/castle", "apt-get clean", "cloud-init clean --logs"]
  }

  post-processor "manifest" {
    output     = "manifest.json"
    strip_path = true
  }
}
