#!/usr/bin/env bash
# irqbalance off, and every movable IRQ (NIC queues, NVMe) plus RPS/XPS steered to the housekeeping CPUs,
# so that no interrupt lands on an engine core. irqbalance would undo this within seconds.
source "$(dirname "$0")/lib.sh"

write_file 0755 /usr/local/sbin/castle-irq-affinity <<'SCRIPT'
#!/bin/bash
# Installed by infra/packer/scripts/30-irq-affinity.sh. Runs at boot (castle-irq-affinity.service).
set -euo pipefail
. /etc/castle/tuning/cpus
echo "$HOUSEKEEPING_CPUS" > /proc/irq/default_smp_affinity 2>/dev/null || true
for irq in /proc/irq/[0-9]*; do
  # Some IRQs (per-CPU timers, managed NVMe queues) cannot move; the kernel refuses with EIO.
  echo "$HOUSEKEEPING_CPUS" > "$irq/smp_affinity_list" 2>/dev/null || true
done
mask=$(python3 -c "import sys
cpus=set()
for part in sys.argv[1].split(','):
    a,_,b=part.partition('-'); cpus.update(range(int(a),int(b or a)+1))
print(format(sum(1<<c for c in cpus),'x'))" "$HOUSEKEEPING_CPUS")
for q in /sys/class/net/*/queues/rx-*/rps_cpus; do echo "$mask" > "$q" 2>/dev/null || true; done
for q in /sys/class/net/*/queues/tx-*/xps_cpus; do echo "$mask" > "$q" 2>/dev/null || true; done
SCRIPT

write_file 0644 /etc/castle/tuning/cpus <<CFG
HOUSEKEEPING_CPUS=${HOUSEKEEPING_CPUS}
ISOLATED_CPUS=${ISOLATED_CPUS}
CFG

write_file 0644 /etc/systemd/system/castle-irq-affinity.service <<'UNIT'
[Unit]
Description=Steer IRQs, RPS and XPS to the housekeeping CPUs
After=network-pre.target systemd-udev-settle.service
Before=castle-engine.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/castle-irq-affinity

[Install]
WantedBy=multi-user.target
UNIT

run systemctl disable --now irqbalance.service
run systemctl mask irqbalance.service
run systemctl enable castle-irq-affinity.service
