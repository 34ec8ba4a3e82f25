#!/usr/bin/env bash
# Shared helpers for the engine AMI provisioning scripts. Sourced, never executed.
#
# Every script writes through these helpers so that it can run in two modes:
#   ROOT=/            (default) on the Packer build instance: files are written and services changed.
#   ROOT=/tmp/scratch dry run: files land under the scratch root, commands that would change the
#                     running system are printed instead of executed. Nothing outside ROOT is touched.
#
# CPU layout (bake the AMI for one instance size; see infra/packer/README.md):
#   HOUSEKEEPING_CPUS  CPUs for the kernel, IRQs, chrony, sshd, SSM... (default 0-1)
#   ISOLATED_CPUS      CPUs reserved for the castle engine threads (default 2-7)

set -euo pipefail

ROOT="${ROOT:-/}"
ROOT="${ROOT%/}"
HOUSEKEEPING_CPUS="${HOUSEKEEPING_CPUS:-0-1}"
ISOLATED_CPUS="${ISOLATED_CPUS:-2-7}"
HUGEPAGES_2M="${HUGEPAGES_2M:-1024}"

log() {
  printf '[%s] %s\n' "$(basename "$0")" "$*" >&2
}

is_dry_run() {
  [ -n "$ROOT" ]
}

# path INSIDE the target system -> path on disk
target() {
  printf '%s%s' "$ROOT" "$1"
}

# write_file MODE PATH < content
write_file() {
  local mode="$1" path="$2" dest
  dest="$(target "$path")"
  mkdir -p "$(dirname "$dest")"
  cat > "$dest"
  chmod "$mode" "$dest"
  log "wrote $path"
}

# run CMD...: execute on the build instance, print in dry-run mode.
run() {
  if is_dry_run; then
    log "dry-run: would run: $*"
  else
    log "run: $*"
    "$@"
  fi
}

# A CPU list such as "2-7,10" must be well formed; a typo here would isolate the wrong cores.
check_cpu_list() {
  local name="$1" value="$2"
  if ! [[ "$value" =~ ^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ ]]; then
    log "$name='$value' is not a CPU list (e.g. 2-7 or 2,3,6-7)"
    exit 2
  fi
}

check_cpu_list HOUSEKEEPING_CPUS "$HOUSEKEEPING_CPUS"
check_cpu_list ISOLATED_CPUS "$ISOLATED_CPUS"
