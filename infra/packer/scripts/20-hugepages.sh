#!/usr/bin/env bash
# Reserved 2 MiB hugepages for the engine's order/level arenas and the journal ring: no page faults and far
# fewer TLB misses on the hot path. Reserved at boot by sysctl (early, before memory fragments) and
# mounted for the castle user.
source "$(dirname "$0")/lib.sh"

write_file 0644 /etc/sysctl.d/60-castle-hugepages.conf <<CFG
# Managed by infra/packer/scripts/20-hugepages.sh
vm.nr_hugepages = ${HUGEPAGES_2M}
vm.hugetlb_shm_group = 990
CFG

write_file 0644 /etc/systemd/system/dev-hugepages-castle.mount <<'UNIT'
[Unit]
Description=Hugepages for the castle engine
DefaultDependencies=no
Before=castle-engine.service

[Mount]
What=hugetlbfs
Where=/dev/hugepages-castle
Type=hugetlbfs
Options=pagesize=2M,mode=0770,gid=990

[Install]
WantedBy=multi-user.target
UNIT

write_file 0644 /etc/castle/tuning/hugepages <<CFG
${HUGEPAGES_2M}
CFG

run groupadd --system --gid 990 castle
run systemctl enable dev-hugepages-castle.mount
