#!/usr/bin/env bash
# castle-verify-tuning: exits non-zero unless every tuning of the engine AMI is IN EFFECT on the running
# system (not merely configured). Packer runs it after a reboot, failing the build; the AMI installs it as
# /usr/local/sbin/castle-verify-tuning, which user data and castle-engine.service (ExecStartPre) run again
# on every boot, so an engine never starts on an untuned host.
#
# ROOT=/path reads /proc, /sys and /etc below that path instead (tests build a fake tree there);
# CHRONYC and ETHTOOL override the commands used to query chrony and the NIC.
set -euo pipefail

ROOT="${ROOT:-/}"
ROOT="${ROOT%/}"
CHRONYC="${CHRONYC:-chronyc}"
ETHTOOL="${ETHTOOL:-ethtool}"

pass=0
fail=0
ok() { pass=$((pass + 1)); printf 'PASS %s\n' "$*"; }
bad() { fail=$((fail + 1)); printf 'FAIL %s\n' "$*"; }
f() { printf '%s%s' "$ROOT" "$1"; }
# First line of a file with runs of blanks squeezed to one space (bash builtins only: this runs at boot).
read_file() {
  local words=()
  if [ -r "$(f "$1")" ]; then read -ra words < "$(f "$1")" || true; fi
  printf '%s' "${words[*]}"
}

# Expand "0-1,4" into "0 1 4".
expand_cpus() {
  local part a b out=""
  IFS=',' read -ra parts <<< "$1"
  for part in "${parts[@]}"; do
    [ -z "$part" ] && continue
    a="${part%-*}"; b="${part#*-}"
    for ((c = a; c <= b; c++)); do out="$out $c"; done
  done
  printf '%s' "${out# }"
}

if [ ! -f "$(f /etc/castle/tuning/cpus)" ]; then
  bad "/etc/castle/tuning/cpus missing: the AMI was not provisioned by infra/packer"
  printf 'castle-verify-tuning: %d passed, %d failed\n' "$pass" "$fail"
  exit 1
fi
# shellcheck disable=SC1090
. "$(f /etc/castle/tuning/cpus)"
housekeeping=" $(expand_cpus "$HOUSEKEEPING_CPUS") "

# 1. Kernel command line actually booted with.
cmdline=" $(read_file /proc/cmdline) "
read -ra params < "$(f /etc/castle/tuning/cmdline)"
for param in "${params[@]}"; do
  if [[ "$cmdline" == *" $param "* ]]; then ok "cmdline has $param"; else bad "cmdline lacks $param"; fi
done

# 2. The kernel really isolated the cores (it silently ignores malformed lists).
for knob in isolated nohz_full; do
  got="$(read_file /sys/devices/system/cpu/$knob)"
  if [ "$(expand_cpus "$got")" = "$(expand_cpus "$ISOLATED_CPUS")" ]; then ok "cpu/$knob = $got"; else bad "cpu/$knob = '$got', want $ISOLATED_CPUS"; fi
done

# 3. Transparent hugepages off.
thp="$(read_file /sys/kernel/mm/transparent_hugepage/enabled)"
if [[ "$thp" == *"[never]"* ]]; then ok "THP never"; else bad "THP is '$thp'"; fi

# 4. Hugepages reserved.
want_hp="$(read_file /etc/castle/tuning/hugepages)"
got_hp="$(read_file /proc/sys/vm/nr_hugepages)"
if [ -n "$got_hp" ] && [ "$got_hp" -ge "${want_hp:-1}" ]; then ok "hugepages $got_hp >= $want_hp"; else bad "hugepages '$got_hp' < $want_hp"; fi

# 5. irqbalance not running.
running=""
procs=0
for comm in "$(f /proc)"/[0-9]*/comm; do
  [ -f "$comm" ] || continue
  procs=$((procs + 1))
  if [ "$(cat "$comm" 2>/dev/null)" = "irqbalance" ]; then running="yes"; fi
done
if [ "$procs" -eq 0 ]; then bad "cannot list processes under /proc";
elif [ -z "$running" ]; then ok "irqbalance not running"; else bad "irqbalance is running"; fi

# 6. Every IRQ with a handler is affine to housekeeping CPUs only.
irq_bad=""
[ -d "$(f /proc/irq)" ] || irq_bad=" (no /proc/irq)"
for dir in "$(f /proc/irq)"/[0-9]*; do
  [ -f "$dir/smp_affinity_list" ] || continue
  # IRQs without an action subdirectory have no handler and never fire.
  [ -n "$(find "$dir" -mindepth 1 -maxdepth 1 -type d -print -quit)" ] || continue
  for c in $(expand_cpus "$(tr -d ' \n' < "$dir/smp_affinity_list")"); do
    [[ "$housekeeping" == *" $c "* ]] || irq_bad="$irq_bad $(basename "$dir")"
  done
done
if [ -z "$irq_bad" ]; then ok "IRQs on housekeeping CPUs $HOUSEKEEPING_CPUS"; else bad "IRQs on isolated CPUs:$irq_bad"; fi

# 7. Every sysctl the AMI sets has its value (a missing key counts, unless marked optional with '-').
for conf in "$(f /etc/sysctl.d)"/6[0-9]-castle-*.conf; do
  [ -f "$conf" ] || continue
  while IFS= read -r line; do
    line="${line%%#*}"
    [[ "$line" == *=* ]] || continue
    key="${line%%=*}"
    key="${key// /}"
    read -ra want_words <<< "${line#*=}"
    want="${want_words[*]}"
    optional=""
    if [[ "$key" == -* ]]; then optional=yes; key="${key#-}"; fi
    path="/proc/sys/${key//.//}"
    if [ ! -e "$(f "$path")" ]; then
      if [ -n "$optional" ]; then ok "sysctl $key absent (optional)"; else bad "sysctl $key missing"; fi
      continue
    fi
    got="$(read_file "$path")"
    if [ "$got" = "$want" ]; then ok "sysctl $key = $want"; else bad "sysctl $key = '$got', want '$want'"; fi
  done < "$conf"
done

# 8. tuned profile active.
if [ "$(read_file /etc/tuned/active_profile)" = "castle-engine" ]; then ok "tuned profile castle-engine"; else bad "tuned profile is '$(read_file /etc/tuned/active_profile)'"; fi

# 9. chrony synchronised to Amazon Time Sync (link-local NTP or the ENA PHC).
if sources="$("$CHRONYC" -n sources 2>/dev/null)"; then
  if echo "$sources" | grep -Eq '^\^\*.*169\.254\.169\.123|^#\*.*PHC'; then ok "chrony synchronised to Amazon Time Sync"; else bad "chrony not synchronised to 169.254.169.123 or PHC"; fi
else
  bad "chronyc not answering"
fi

# 10. ENA: PHC enabled and exposed, interrupt moderation off.
if [ "$(read_file /sys/module/ena/parameters/phc_enable)" = "1" ]; then ok "ena phc_enable=1"; else bad "ena phc_enable not 1 (ena module loaded?)"; fi
if [ -e "$(f /sys/class/ptp/ptp0)" ]; then ok "PTP hardware clock present"; else bad "no /sys/class/ptp/ptp0"; fi
for dev in "$(f /sys/class/net)"/*; do
  [ "$(read_file "/sys/class/net/$(basename "$dev")/device/driver_name")" = "ena" ] || [ "$(basename "$(readlink -f "$dev/device/driver" 2>/dev/null)")" = "ena" ] || continue
  name="$(basename "$dev")"
  if "$ETHTOOL" -c "$name" 2>/dev/null | grep -Eq '^Adaptive RX:\s+off'; then ok "$name adaptive-rx off"; else bad "$name adaptive RX coalescing still on"; fi
done

# 11. io_uring usable.
iou="$(read_file /proc/sys/kernel/io_uring_disabled)"
if [ -z "$iou" ] || [ "$iou" = "0" ]; then ok "io_uring not disabled"; else bad "kernel.io_uring_disabled = $iou"; fi
if [ -z "$ROOT" ]; then
  if python3 -c 'import ctypes,os,sys
libc=ctypes.CDLL(None,use_errno=True)
p=ctypes.create_string_buffer(120)
fd=libc.syscall(425,4,p)
sys.exit(0 if fd>=0 else 1)'; then ok "io_uring_setup works"; else bad "io_uring_setup failed"; fi
fi

# 12. Engine binary and unit pinned to the isolated cores.
if [ -x "$(f /usr/local/bin/castle)" ]; then ok "castle binary installed"; else bad "no /usr/local/bin/castle"; fi
if grep -qx "CPUAffinity=$ISOLATED_CPUS" "$(f /etc/systemd/system/castle-engine.service)" 2>/dev/null; then ok "castle-engine pinned to $ISOLATED_CPUS"; else bad "castle-engine.service not pinned to $ISOLATED_CPUS"; fi

printf 'castle-verify-tuning: %d passed, %d failed\n' "$pass" "$fail"
[ "$fail" -eq 0 ]
