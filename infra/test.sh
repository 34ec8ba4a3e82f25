#!/usr/bin/env bash
# Offline tests of infra/ and deploy/: Terraform (fmt, validate, mocked module tests, plan/apply/destroy of
# the dev environment against moto on loopback), Packer (validate), the engine tuning scripts (shellcheck,
# dry run into a scratch root, the verify script against good and broken fake systems) and the Kubernetes
# manifests. Non-interactive; nothing is downloaded (providers come from the local mirror).
#
#   infra/test.sh                  all stages
#   infra/test.sh moto tuning      only some stages (fmt validate unit moto shellcheck packer tuning deploy)
#
# Environment: TF_PLUGIN_DIR (default /opt/tf-plugins), MOTO_PORT (default: a free port), CASTLE_BIN (the castle
# binary the deploy stage checks the manifests against; default ${CARGO_TARGET_DIR:-target}/debug/castle).
# Last line: "infra: N passed, M failed"; the exit status is non-zero if anything failed.
# shellcheck disable=SC2317 # the stage functions are invoked indirectly, through check()
set -euo pipefail

INFRA="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$INFRA/.." && pwd)"
TF="$INFRA/terraform"
PACKER_DIR="$INFRA/packer"
TF_PLUGIN_DIR="${TF_PLUGIN_DIR:-/opt/tf-plugins}"
ALL_STAGES=(fmt validate unit moto shellcheck packer tuning deploy)
STAGES=("$@")
[ ${#STAGES[@]} -gt 0 ] || STAGES=("${ALL_STAGES[@]}")
for stage in "${STAGES[@]}"; do
  [[ " ${ALL_STAGES[*]} " == *" $stage "* ]] || {
    echo "infra/test.sh: unknown stage '$stage' (stages: ${ALL_STAGES[*]})" >&2
    exit 2
  }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/castle-infra-test.XXXXXX")"
mkdir -p "$WORK/logs"
MOTO_STAGE_PID=""
PASSED=0
FAILED=0
FAILURES=()
T0=$(date +%s)

# terraform init writes .terraform.lock.hcl next to each configuration (the repository ignores them);
# remove the ones this run created so that the tree is left as it was found.
PRE_EXISTING_LOCKS="$(find "$INFRA/terraform" -name .terraform.lock.hcl 2>/dev/null | sort)"
cleanup() {
  local lock
  while IFS= read -r lock; do
    [ -n "$lock" ] || continue
    grep -qxF "$lock" <<<"$PRE_EXISTING_LOCKS" || rm -f "$lock"
  done < <(find "$INFRA/terraform" -name .terraform.lock.hcl 2>/dev/null)
  if [ -n "$MOTO_STAGE_PID" ]; then
    kill "$MOTO_STAGE_PID" 2>/dev/null || true
  fi
  if [ -f "$WORK/moto.pid" ]; then
    kill "$(cat "$WORK/moto.pid")" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# check NAME CMD...: run CMD in a subshell with errexit, log its output, count the result.
check() {
  local name="$1" log rc start
  shift
  log="$WORK/logs/$(printf '%s' "$name" | tr -c 'A-Za-z0-9._-' '_').log"
  start=$(date +%s)
  set +e
  (set -euo pipefail; "$@") >"$log" 2>&1
  rc=$?
  set -e
  if [ "$rc" -eq 0 ]; then
    PASSED=$((PASSED + 1))
    printf 'ok   %-58s %4ss\n' "$name" "$(($(date +%s) - start))"
  else
    FAILED=$((FAILED + 1))
    FAILURES+=("$name")
    printf 'FAIL %-58s %4ss (exit %s)\n' "$name" "$(($(date +%s) - start))" "$rc"
    tail -n 40 "$log" | sed 's/^/     | /'
  fi
}

want() {
  local s
  for s in "${STAGES[@]}"; do [ "$s" = "$1" ] && return 0; done
  return 1
}

need() {
  # need COMMAND PACKAGE [apt]: fail naming the package, or install it with apt-get when allowed.
  local cmd="$1" pkg="$2" how="${3:-}"
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if [ "$how" = apt ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $pkg with apt-get" >&2
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >"$WORK/logs/apt-$pkg.log" 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >"$WORK/logs/apt-$pkg.log" 2>&1; }; then
      command -v "$cmd" >/dev/null 2>&1 && return 0
    fi
  fi
  echo "infra/test.sh: '$cmd' not found: install the $pkg package" >&2
  return 1
}

# ---------------------------------------------------------------------------------------------------------
# Terraform setup: providers only from the local mirror, never from the network.
need terraform "terraform (HashiCorp apt repository or release zip)"
[ -d "$TF_PLUGIN_DIR/registry.terraform.io/hashicorp/aws" ] || {
  echo "infra/test.sh: no AWS provider mirror under $TF_PLUGIN_DIR" >&2
  exit 1
}
cat >"$WORK/terraformrc" <<RC
provider_installation {
  filesystem_mirror {
    path    = "$TF_PLUGIN_DIR"
    include = ["registry.terraform.io/hashicorp/*"]
  }
  direct {
    exclude = ["registry.terraform.io/*/*"]
  }
}
RC
export TF_CLI_CONFIG_FILE="$WORK/terraformrc"
export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
# Keep .terraform directories out of the tree (TF_DATA_DIR per working directory).
# (.terraform.lock.hcl is written next to the configuration; the repository ignores it.)
tf_init() { # tf_init DIR [args...]
  local dir="$1"
  shift
  TF_DATA_DIR="$WORK/tfdata/$(basename "$(dirname "$dir")")-$(basename "$dir")" \
    terraform -chdir="$dir" init -no-color -input=false -plugin-dir="$TF_PLUGIN_DIR" "$@"
}
tf() { # tf DIR terraform-args...
  local dir="$1"
  shift
  TF_DATA_DIR="$WORK/tfdata/$(basename "$(dirname "$dir")")-$(basename "$dir")" terraform -chdir="$dir" "$@"
}

ROOTS=(org security network dev test prod)

# ---------------------------------------------------------------------------------------------------------
# dev against moto: the script starts its own server on a free loopback port and stops it on exit.
# This stage mostly waits (the provider polls resources into their final state), so it runs in the
# background while the CPU-bound stages run; its results are printed and counted at the end.
moto_stage() {
  PASSED=0
  FAILED=0
  FAILURES=()
  local port
  port="${MOTO_PORT:-$(python3 "$INFRA/tests/moto_aws.py" free-port)}"
  MOTO="http://127.0.0.1:$port"
  # Managed policies must exist for role attachments; certificates are issued at once instead of after 60 s.
  MOTO_IAM_LOAD_MANAGED_POLICIES=true MOTO_ACM_VALIDATION_WAIT=0 \
    python3 -m moto.server -H 127.0.0.1 -p "$port" >"$WORK/logs/moto-server.log" 2>&1 &
  echo $! >"$WORK/moto.pid"
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=eu-west-1
  unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL
  DEV="$TF/live/dev"

  moto_start() {
    python3 "$INFRA/tests/moto_aws.py" wait "$MOTO"
    python3 "$INFRA/tests/moto_aws.py" bootstrap "$MOTO"
    python3 "$INFRA/tests/moto_aws.py" ami "$MOTO" >"$WORK/ami-id"
    # The documented S3 + DynamoDB backend, pointed at the emulator.
    cat >"$WORK/backend-moto.hcl" <<HCL
bucket                      = "castle-terraform-state-test"
key                         = "workloads/dev/terraform.tfstate"
region                      = "eu-west-1"
dynamodb_table              = "castle-terraform-locks"
encrypt                     = true
use_path_style              = true
skip_credentials_validation = true
skip_requesting_account_id  = true
skip_metadata_api_check     = true
skip_region_validation      = true
endpoints = {
  s3       = "$MOTO"
  dynamodb = "$MOTO"
  sts      = "$MOTO"
}
HCL
    TF_DATA_DIR="$WORK/tfdata/moto-dev" terraform -chdir="$DEV" init -no-color -input=false -reconfigure \
      -plugin-dir="$TF_PLUGIN_DIR" -backend-config="$WORK/backend-moto.hcl"
  }
  MOTO_VARS=()
  moto_tf() { TF_DATA_DIR="$WORK/tfdata/moto-dev" terraform -chdir="$DEV" "$@"; }
  moto_plan() {
    moto_tf plan -no-color -input=false -parallelism=20 -out="$WORK/dev.tfplan" "${MOTO_VARS[@]}" | tee "$WORK/dev.plan.txt"
    grep -E '^Plan: [0-9]+ to add, 0 to change, 0 to destroy' "$WORK/dev.plan.txt"
  }
  moto_apply() { moto_tf apply -no-color -input=false -parallelism=20 "$WORK/dev.tfplan"; }
  moto_state() {
    moto_tf state list >"$WORK/dev.state"
    echo "$(wc -l <"$WORK/dev.state") resources in state (S3 backend on moto)"
    python3 - "$MOTO" <<'PY'
import boto3, sys
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="eu-west-1")
body = s3.get_object(Bucket="castle-terraform-state-test", Key="workloads/dev/terraform.tfstate")["Body"].read()
assert b'"aws_autoscaling_group"' in body, "state object in the S3 backend lacks the engine ASG"
PY
    moto_tf output -json >"$WORK/dev-outputs.json"
  }
  moto_verify() { python3 "$INFRA/tests/moto_aws.py" verify "$MOTO"; }
  moto_render_tgb() {
    python3 "$REPO/deploy/k8s/render-target-group-bindings.py" dev --outputs "$WORK/dev-outputs.json" >"$WORK/tgb.yaml"
    python3 - "$WORK/tgb.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
assert len(docs) == 3, docs
assert all(d["spec"]["targetGroupARN"].startswith("arn:aws:elasticloadbalancing:") for d in docs)
print("\n".join(d["metadata"]["name"] + " -> " + d["spec"]["targetGroupARN"] for d in docs))
PY
  }
  moto_destroy() {
    # moto has no DeleteResourceServer; deleting the user pool removes its resource servers anyway.
    moto_tf state rm 'module.environment.module.cognito[0].aws_cognito_resource_server.api' || true
    moto_tf destroy -no-color -input=false -auto-approve -refresh=false -parallelism=20 "${MOTO_VARS[@]}"
    python3 "$INFRA/tests/moto_aws.py" verify-destroyed "$MOTO"
  }

  check "moto: server, backend bootstrap, terraform init (S3 backend)" moto_start
  MOTO_VARS=(-var-file=moto.tfvars -var "aws_endpoint_url=$MOTO" -var "engine_ami_id=$(cat "$WORK/ami-id" 2>/dev/null || echo none)")
  check "moto: plan dev (emulatable part)" moto_plan
  check "moto: apply dev" moto_apply
  check "moto: state stored in the S3 backend" moto_state
  check "moto: resources exist and are configured" moto_verify
  check "moto: TargetGroupBindings from real outputs" moto_render_tgb
  check "moto: destroy dev, nothing left" moto_destroy
  kill "$(cat "$WORK/moto.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -f "$WORK/moto.pid"
  echo "$PASSED $FAILED ${FAILURES[*]}" >"$WORK/moto.result"
}

if want moto; then
  need python3 python3
  python3 -c 'import moto, boto3' 2>/dev/null || {
    echo "infra/test.sh: python3 module moto missing: pip install 'moto[server]'" >&2
    exit 1
  }
  echo "moto stage started in the background"
  moto_stage >"$WORK/moto.out" 2>&1 &
  MOTO_STAGE_PID=$!
fi


if want fmt; then
  check "terraform fmt -check" terraform fmt -check -recursive -diff "$TF"
fi

if want validate; then
  for root in "${ROOTS[@]}"; do
    validate_root() {
      tf_init "$TF/live/$1" -backend=false
      tf "$TF/live/$1" validate -no-color
    }
    check "terraform validate live/$root" validate_root "$root"
  done
fi

if want unit; then
  for tests in "$TF"/modules/*/tests; do
    module="$(dirname "$tests")"
    unit_module() {
      tf_init "$1" -backend=false
      tf "$1" test -no-color
    }
    check "terraform test modules/$(basename "$module")" unit_module "$module"
  done
fi

# ---------------------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------------------
SCRIPTS=("$PACKER_DIR"/scripts/*.sh)

if want shellcheck; then
  need shellcheck shellcheck apt
  for script in "${SCRIPTS[@]}" "$INFRA/test.sh"; do
    check "shellcheck ${script#"$INFRA"/}" shellcheck -x -P "$(dirname "$script")" "$script"
  done
  # The engine's user data is a Terraform template: render it with sample values, then lint it.
  lint_user_data() {
    # shellcheck disable=SC2016 # the ${...} are Terraform template placeholders, replaced literally
    sed -e '/^%{/d' -e 's/\${k}=\${v}/CASTLE_SHARD=a/' -e 's/\${log_group_name}/\/castle\/dev\/engine/' \
      -e 's/\${command_port}/7400/' "$TF/modules/engine/user-data.sh.tftpl" >"$WORK/user-data.sh"
    shellcheck -s bash "$WORK/user-data.sh"
  }
  lint_referee_user_data() {
    # shellcheck disable=SC2016 # as above
    sed -e 's/\${port}/7500/' -e 's/\${lease_ms}/2000/' "$TF/modules/engine/referee-user-data.sh.tftpl" >"$WORK/referee-user-data.sh"
    # shellcheck disable=SC2016 # a literal ${, the template placeholder marker
    if grep -nF '${' "$WORK/referee-user-data.sh"; then
      echo "unrendered template placeholders left"
      return 1
    fi
    shellcheck -s bash "$WORK/referee-user-data.sh"
  }
  check "shellcheck modules/engine/user-data.sh.tftpl (rendered)" lint_user_data
  check "shellcheck modules/engine/referee-user-data.sh.tftpl (rendered)" lint_referee_user_data
fi

if want packer; then
  need packer packer apt
  packer_version="$(packer version | head -n1 | sed 's/^Packer v//')"
  echo "packer $packer_version" >&2
  # The template targets packer >= 1.10 (amazon plugin ~> 1.3). Debian's packer 1.6.6 has the amazon builder
  # built in but predates required_plugins, imds_support/metadata_options and functions in variable
  # validation; those lines sit between "packer>=1.7" markers and are removed for it.
  packer_compat() {
    mkdir -p "$WORK/packer"
    sed '/# packer>=1.7:begin/,/# packer>=1.7:end/d' "$PACKER_DIR/engine.pkr.hcl" >"$WORK/packer/engine.pkr.hcl"
    cp -r "$PACKER_DIR/scripts" "$WORK/packer/scripts"
    printf '#!/bin/sh\n' >"$WORK/packer/castle"
  }
  packer_fmt() { packer fmt -check -diff "$PACKER_DIR"; }
  packer_full() {
    packer_compat
    cd "$WORK/packer"
    packer validate -var castle_binary="$WORK/packer/castle" .
  }
  packer_negative() {
    packer_compat
    cd "$WORK/packer"
    ! packer validate -var castle_binary="$WORK/packer/missing-binary" . || return 1
  }
  packer_new() { cd "$PACKER_DIR" && packer validate -syntax-only .; }
  check "packer fmt -check" packer_fmt
  if printf '%s\n1.10.0\n' "$packer_version" | sort -V -C 2>/dev/null && [ "$packer_version" != "1.10.0" ]; then
    check "packer $packer_version validate (template minus >=1.7 lines)" packer_full
    check "packer $packer_version validate rejects a missing castle binary" packer_negative
  else
    # A full validate needs the amazon plugin (packer init downloads it); offline only the syntax is checked.
    check "packer $packer_version validate -syntax-only" packer_new
  fi
fi

# ---------------------------------------------------------------------------------------------------------
# Tuning scripts in dry-run mode against a scratch root, then the verify script against fake systems.
if want tuning; then
  SCRATCH="$WORK/scratch-root"
  tuning_dry_run() {
    mkdir -p "$SCRATCH/tmp"
    printf '#!/bin/sh\necho castle\n' >"$WORK/castle-binary"
    for s in "${SCRIPTS[@]}"; do
      case "$(basename "$s")" in 99-verify.sh) continue ;; esac
      ROOT="$SCRATCH" HOUSEKEEPING_CPUS=0-1 ISOLATED_CPUS=2-7 HUGEPAGES_2M=512 CASTLE_BINARY="$WORK/castle-binary" \
        bash "$s" 2>>"$WORK/dry-run.log"
    done
    # Dry run means nothing outside the scratch root was touched and no system command ran.
    grep -q 'dry-run: would run: update-grub' "$WORK/dry-run.log"
    if grep -q '\] run: ' "$WORK/dry-run.log"; then return 1; fi
    find "$SCRATCH" -type f | sed "s|^$SCRATCH||" | sort
  }
  has() { # has FILE REGEX
    grep -Eq -- "$2" "$SCRATCH$1" || {
      echo "$1 lacks /$2/"
      return 1
    }
  }
  tuning_cmdline() {
    for p in 'isolcpus=managed_irq,domain,2-7' 'nohz_full=2-7' 'rcu_nocbs=2-7' 'irqaffinity=0-1' \
      'processor.max_cstate=1' 'intel_idle.max_cstate=0' 'transparent_hugepage=never'; do
      has /etc/default/grub.d/60-castle-tuning.cfg "GRUB_CMDLINE_LINUX_DEFAULT=.*$p"
    done
  }
  tuning_files() {
    has /etc/sysctl.d/60-castle-hugepages.conf '^vm.nr_hugepages = 512$'
    has /etc/systemd/system/castle-irq-affinity.service 'ExecStart=/usr/local/sbin/castle-irq-affinity'
    has /etc/castle/tuning/cpus '^HOUSEKEEPING_CPUS=0-1$'
    has /etc/sysctl.d/60-castle-network.conf '^net.core.busy_poll = 50$'
    has /etc/sysctl.d/60-castle-network.conf '^net.core.rmem_max = 16777216$'
    has /etc/tuned/castle-engine/tuned.conf '^include=network-latency$'
    has /etc/tuned/active_profile '^castle-engine$'
    has /etc/chrony/conf.d/10-castle-amazon-time-sync.conf '^server 169.254.169.123 prefer'
    has /etc/chrony/conf.d/10-castle-amazon-time-sync.conf '^refclock PHC /dev/ptp0'
    has /etc/modprobe.d/castle-ena.conf 'phc_enable=1'
    has /etc/sysctl.d/62-castle-io-uring.conf '^-kernel.io_uring_disabled = 0$'
    has /etc/systemd/system/castle-engine.service '^CPUAffinity=2-7$'
    has /etc/systemd/system/castle-engine.service '^ExecStartPre=/usr/local/sbin/castle-verify-tuning$'
    has /etc/systemd/system.conf.d/60-castle-cpuaffinity.conf '^CPUAffinity=0-1$'
    [ -x "$SCRATCH/usr/local/bin/castle" ] && [ -x "$SCRATCH/usr/local/sbin/castle-verify-tuning" ]
  }
  tuning_bad_input() {
    ! ROOT="$WORK/bad-root" ISOLATED_CPUS="2-7;rm" bash "$PACKER_DIR/scripts/10-kernel-cmdline.sh" || return 1
    [ ! -e "$WORK/bad-root/etc/default/grub.d/60-castle-tuning.cfg" ]
  }
  # A fake running system whose /proc and /sys show the tuning in effect.
  fake_system() {
    local fake="$1"
    rm -rf "$fake"
    cp -a "$SCRATCH" "$fake"
    mkdir -p "$fake/proc/sys/vm" "$fake/proc/sys/net/core" "$fake/proc/sys/net/ipv4" "$fake/proc/sys/kernel" \
      "$fake/sys/devices/system/cpu" "$fake/sys/kernel/mm/transparent_hugepage" "$fake/sys/module/ena/parameters" \
      "$fake/sys/class/ptp/ptp0" "$fake/proc/1" "$fake/proc/irq/24/eth0-Tx-Rx-0" "$fake/proc/irq/25"
    echo "BOOT_IMAGE=/vmlinuz root=/dev/xvda1 ro $(cat "$SCRATCH/etc/castle/tuning/cmdline")" >"$fake/proc/cmdline"
    echo 2-7 >"$fake/sys/devices/system/cpu/isolated"
    echo 2-7 >"$fake/sys/devices/system/cpu/nohz_full"
    echo 'always madvise [never]' >"$fake/sys/kernel/mm/transparent_hugepage/enabled"
    echo 1 >"$fake/sys/module/ena/parameters/phc_enable"
    echo systemd >"$fake/proc/1/comm"
    echo 0-1 >"$fake/proc/irq/24/smp_affinity_list"
    echo 0-7 >"$fake/proc/irq/25/smp_affinity_list" # no handler: never fires, ignored
    local conf line key value words
    for conf in "$fake"/etc/sysctl.d/6*-castle-*.conf; do
      while IFS= read -r line; do
        line="${line%%#*}"
        [[ "$line" == *=* ]] || continue
        key="${line%%=*}"
        key="${key//[ -]/}"
        read -ra words <<<"${line#*=}"
        value="${words[*]}"
        mkdir -p "$(dirname "$fake/proc/sys/${key//./\/}")"
        printf '%s\n' "$value" | tr ' ' '\t' >"$fake/proc/sys/${key//./\/}"
      done <"$conf"
    done
    printf '#!/bin/sh\necho "MS Name/IP address         Stratum Poll Reach LastRx Last sample"\necho "#* PHC0                          0   0   377     1    +12ns[  +15ns] +/-  514ns"\necho "^- 169.254.169.123               1   4   377    10   +2us[  +2us] +/-  300us"\n' >"$WORK/chronyc"
    chmod +x "$WORK/chronyc"
  }
  verify_fake() { ROOT="$1" CHRONYC="$WORK/chronyc" ETHTOOL=false bash "$PACKER_DIR/scripts/99-verify.sh"; }
  tuning_verify_good() {
    fake_system "$WORK/fake-good"
    verify_fake "$WORK/fake-good"
  }
  # Each broken system must make the verify script fail, naming the broken tuning.
  tuning_verify_broken() {
    local case_name out
    for case_name in thp cmdline isolated irqbalance irq sysctl hugepages chrony tuned pinning; do
      fake_system "$WORK/fake-bad"
      case "$case_name" in
        thp) echo '[always] madvise never' >"$WORK/fake-bad/sys/kernel/mm/transparent_hugepage/enabled" ;;
        cmdline) echo 'BOOT_IMAGE=/vmlinuz root=/dev/xvda1 ro' >"$WORK/fake-bad/proc/cmdline" ;;
        isolated) echo '' >"$WORK/fake-bad/sys/devices/system/cpu/isolated" ;;
        irqbalance) mkdir -p "$WORK/fake-bad/proc/812" && echo irqbalance >"$WORK/fake-bad/proc/812/comm" ;;
        irq) echo 0-3 >"$WORK/fake-bad/proc/irq/24/smp_affinity_list" ;;
        sysctl) echo 0 >"$WORK/fake-bad/proc/sys/net/core/busy_poll" ;;
        hugepages) echo 0 >"$WORK/fake-bad/proc/sys/vm/nr_hugepages" ;;
        chrony) printf '#!/bin/sh\necho "^* 203.0.113.5 2 6 377 1 +1ms[+1ms] +/- 20ms"\n' >"$WORK/chronyc" ;;
        tuned) echo balanced >"$WORK/fake-bad/etc/tuned/active_profile" ;;
        pinning) sed -i 's/^CPUAffinity=.*/CPUAffinity=0-7/' "$WORK/fake-bad/etc/systemd/system/castle-engine.service" ;;
      esac
      if out="$(verify_fake "$WORK/fake-bad")"; then
        echo "verify passed although '$case_name' is broken"
        return 1
      fi
      echo "$out" | grep '^FAIL' | sed "s/^/[$case_name] /"
    done
  }
  check "tuning scripts: dry run into a scratch root" tuning_dry_run
  check "tuning scripts: kernel command line (isolcpus, nohz_full, ...)" tuning_cmdline
  check "tuning scripts: hugepages, IRQ, sysctl, tuned, chrony, ENA, io_uring, unit" tuning_files
  check "tuning scripts: reject a malformed CPU list" tuning_bad_input
  check "verify script: passes on a tuned system" tuning_verify_good
  check "verify script: fails on each of 10 broken tunings" tuning_verify_broken
fi

if want deploy; then
  # Checks every container's subcommand, flags and variables against the castle binary's --help
  # ($CASTLE_BIN, else ${CARGO_TARGET_DIR:-target}/debug/castle: scripts/test builds it first).
  check "deploy/k8s: manifests vs castle --help, overlays, KEDA, Terraform contracts" python3 "$INFRA/tests/check_deploy.py"
  check "deploy/k8s: the check reports each of 10 deliberate breakages" python3 "$INFRA/tests/check_deploy.py" --self-test
fi

if [ -n "$MOTO_STAGE_PID" ]; then
  wait "$MOTO_STAGE_PID" || true
  MOTO_STAGE_PID=""
  cat "$WORK/moto.out"
  if [ -f "$WORK/moto.result" ]; then
    read -r moto_passed moto_failed moto_failures <"$WORK/moto.result"
    PASSED=$((PASSED + moto_passed))
    FAILED=$((FAILED + moto_failed))
    [ -z "$moto_failures" ] || FAILURES+=("$moto_failures")
  else
    FAILED=$((FAILED + 1))
    FAILURES+=("moto stage did not finish")
  fi
fi

echo "infra: total $(($(date +%s) - T0))s${FAILURES[*]:+; failed: ${FAILURES[*]}}"
echo "infra: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
