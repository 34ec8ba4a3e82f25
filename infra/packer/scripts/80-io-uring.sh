#!/usr/bin/env bash
# io_uring enabled for the journal writer (batched, asynchronous O_DIRECT writes and fsyncs without a
# thread per request). Linux >= 6.6 has kernel.io_uring_disabled (0 = enabled for all); older kernels
# have it always on. The engine registers its buffers, which counts against RLIMIT_MEMLOCK, so the
# service raises that limit (90-castle-service.sh).
source "$(dirname "$0")/lib.sh"

write_file 0644 /etc/sysctl.d/62-castle-io-uring.conf <<'CFG'
# Managed by infra/packer/scripts/80-io-uring.sh
# 0: io_uring available to all processes (2 would disable it). Ignored on kernels without the knob.
-kernel.io_uring_disabled = 0
CFG

write_file 0644 /etc/security/limits.d/60-castle-memlock.conf <<'CFG'
# Managed by infra/packer/scripts/80-io-uring.sh: io_uring registered buffers and hugepage arenas.
castle soft memlock unlimited
castle hard memlock unlimited
CFG

run sysctl --system
