#!/usr/bin/env bash
# Kernel command line for a deterministic matching core:
#   isolcpus=managed_irq,domain,<iso>  no scheduler load balancing and no managed IRQs on the engine cores
#   nohz_full=<iso>                    no periodic scheduler tick while one task runs on the core
#   rcu_nocbs=<iso>                    RCU callbacks offloaded to housekeeping kthreads
#   irqaffinity=<hk>                   default IRQ affinity to housekeeping cores
#   processor.max_cstate=1 intel_idle.max_cstate=0   no deep C-states (wake-up latency of tens of us)
#   transparent_hugepage=never          no khugepaged compaction stalls; the engine uses explicit hugepages
#   nosoftlockup nowatchdog nmi_watchdog=0   no watchdog timers/NMIs interrupting isolated cores
#   tsc=reliable                         keep TSC as clocksource without watchdog checks
# Written as a grub.d drop-in (Debian's cloud image reads /etc/default/grub.d/*.cfg), then update-grub.
source "$(dirname "$0")/lib.sh"

CMDLINE="isolcpus=managed_irq,domain,${ISOLATED_CPUS} nohz_full=${ISOLATED_CPUS} rcu_nocbs=${ISOLATED_CPUS} irqaffinity=${HOUSEKEEPING_CPUS} processor.max_cstate=1 intel_idle.max_cstate=0 transparent_hugepage=never nosoftlockup nowatchdog nmi_watchdog=0 tsc=reliable"

write_file 0644 /etc/default/grub.d/60-castle-tuning.cfg <<CFG
# Managed by infra/packer/scripts/10-kernel-cmdline.sh (castle engine AMI).
GRUB_CMDLINE_LINUX_DEFAULT="\${GRUB_CMDLINE_LINUX_DEFAULT} ${CMDLINE}"
CFG

# Kept for castle-verify-tuning: the exact parameters this AMI must boot with.
write_file 0644 /etc/castle/tuning/cmdline <<CFG
${CMDLINE}
CFG

run update-grub
