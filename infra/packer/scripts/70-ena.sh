#!/usr/bin/env bash
# ENA driver settings: the PTP hardware clock on (chrony refclock), large LLQ headers, and adaptive
# interrupt moderation off so a packet raises its interrupt at once instead of after a coalescing delay.
# amazon-ec2-utils provides the udev rules that name EBS NVMe devices (/dev/sdf = engine journal).
source "$(dirname "$0")/lib.sh"

run apt-get install -y --no-install-recommends ethtool amazon-ec2-utils

write_file 0644 /etc/modprobe.d/castle-ena.conf <<'CFG'
# Managed by infra/packer/scripts/70-ena.sh
options ena phc_enable=1 force_large_llq_header=1
CFG

write_file 0755 /usr/local/sbin/castle-ena-tuning <<'SCRIPT'
#!/bin/bash
# Installed by infra/packer/scripts/70-ena.sh. Runs at boot (castle-ena-tuning.service).
set -euo pipefail
for dev in /sys/class/net/*; do
  name=$(basename "$dev")
  [ "$(basename "$(readlink -f "$dev/device/driver" 2>/dev/null)")" = "ena" ] || continue
  ethtool -C "$name" adaptive-rx off rx-usecs 0 tx-usecs 0 || true
done
SCRIPT

write_file 0644 /etc/systemd/system/castle-ena-tuning.service <<'UNIT'
[Unit]
Description=ENA interrupt moderation off for the castle engine
After=network-online.target
Wants=network-online.target
Before=castle-engine.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/castle-ena-tuning

[Install]
WantedBy=multi-user.target
UNIT

run systemctl enable castle-ena-tuning.service
run update-initramfs -u
