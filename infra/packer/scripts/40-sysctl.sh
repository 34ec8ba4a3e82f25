#!/usr/bin/env bash
# Network busy polling and socket buffers for the order-entry and event-stream sockets, and the kernel
# knobs that stop background work from migrating onto isolated cores.
source "$(dirname "$0")/lib.sh"

write_file 0644 /etc/sysctl.d/60-castle-network.conf <<'CFG'
# Managed by infra/packer/scripts/40-sysctl.sh
# Busy polling: poll()/epoll and blocking reads spin on the device queue for up to 50 us instead of
# sleeping until the interrupt, trading CPU for tens of microseconds of wake-up latency.
net.core.busy_poll = 50
net.core.busy_read = 50
# Socket buffers: 16 MiB ceilings so bursts of market data and journal replication never drop.
net.core.rmem_max = 16777216
net.core.wmem_max = 16777216
net.core.rmem_default = 1048576
net.core.wmem_default = 1048576
net.ipv4.tcp_rmem = 4096 1048576 16777216
net.ipv4.tcp_wmem = 4096 1048576 16777216
net.core.netdev_max_backlog = 30000
net.core.somaxconn = 4096
# Keep the congestion window after idle periods between bursts of orders.
net.ipv4.tcp_slow_start_after_idle = 0
net.ipv4.tcp_no_metrics_save = 1
# Multicast market data: allow enough IGMP memberships for all feed groups.
net.ipv4.igmp_max_memberships = 256
CFG

write_file 0644 /etc/sysctl.d/61-castle-kernel.conf <<'CFG'
# Managed by infra/packer/scripts/40-sysctl.sh
# No automatic NUMA page migration (it takes page faults on the hot path).
kernel.numa_balancing = 0
# Timers stay on the CPU that armed them instead of migrating to idle (isolated) ones.
kernel.timer_migration = 0
# vmstat refresh every 10 s instead of 1 s: fewer per-CPU work items on nohz_full cores.
vm.stat_interval = 10
# The engine never swaps; there is no swap device, and this keeps page cache eviction from being eager.
vm.swappiness = 0
# Watchdogs are also off on the command line; keep them off if someone re-enables at run time.
kernel.watchdog = 0
kernel.nmi_watchdog = 0
CFG

run sysctl --system
