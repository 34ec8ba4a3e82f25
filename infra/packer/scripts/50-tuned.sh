#!/usr/bin/env bash
# tuned profile castle-engine: network-latency (performance governor, C-state latency cap via
# /dev/cpu_dma_latency, no THP, busy polling) as base; the CPU partitioning itself is on the command line.
source "$(dirname "$0")/lib.sh"

run apt-get install -y --no-install-recommends tuned

write_file 0644 /etc/tuned/castle-engine/tuned.conf <<CFG
# Managed by infra/packer/scripts/50-tuned.sh
[main]
summary=Castle matching engine: network-latency with isolated cores ${ISOLATED_CPUS}
include=network-latency

[cpu]
governor=performance
energy_perf_bias=performance
min_perf_pct=100
force_latency=cstate.id_no_zero:1|1

[vm]
transparent_hugepages=never

[sysctl]
net.core.busy_poll=50
net.core.busy_read=50
kernel.numa_balancing=0

[bootloader]
# The command line is managed by 10-kernel-cmdline.sh; tuned must not rewrite grub.
CFG

write_file 0644 /etc/tuned/active_profile <<'CFG'
castle-engine
CFG
write_file 0644 /etc/tuned/profile_mode <<'CFG'
manual
CFG

run systemctl enable tuned.service
run tuned-adm profile castle-engine
