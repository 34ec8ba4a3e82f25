#!/usr/bin/env bash
# The castle binary and its systemd unit, pinned to the isolated cores. Packer uploads the release build to
# /tmp/castle (CASTLE_BINARY). The unit is installed but not enabled: user data writes the shard's
# /etc/castle/engine.env at boot, runs castle-verify-tuning and then starts it.
source "$(dirname "$0")/lib.sh"

CASTLE_BINARY="${CASTLE_BINARY:-/tmp/castle}"

if [ -f "$CASTLE_BINARY" ]; then
  mkdir -p "$(target /usr/local/bin)"
  install -m 0755 "$CASTLE_BINARY" "$(target /usr/local/bin/castle)"
  log "installed /usr/local/bin/castle from $CASTLE_BINARY"
elif is_dry_run; then
  log "dry-run: no binary at $CASTLE_BINARY, skipping install"
else
  log "castle binary not found at $CASTLE_BINARY"
  exit 1
fi

mkdir -p "$(target /usr/local/sbin)"
install -m 0755 "$(dirname "$0")/99-verify.sh" "$(target /usr/local/sbin/castle-verify-tuning)"
log "installed /usr/local/sbin/castle-verify-tuning"

run useradd --system --uid 990 --gid 990 --home-dir /var/lib/castle --shell /usr/sbin/nologin castle

write_file 0644 /etc/systemd/system/castle-engine.service <<UNIT
# Managed by infra/packer/scripts/90-castle-service.sh
[Unit]
Description=Castle matching engine (sequencer, journal, matching, risk)
Requires=castle-irq-affinity.service dev-hugepages-castle.mount
After=network-online.target chrony.service castle-irq-affinity.service castle-ena-tuning.service dev-hugepages-castle.mount var-lib-castle-journal.mount
Wants=network-online.target

[Service]
Type=simple
User=castle
Group=castle
EnvironmentFile=/etc/castle/engine.env
Environment=CASTLE_ISOLATED_CPUS=${ISOLATED_CPUS}
Environment=CASTLE_HUGEPAGES_DIR=/dev/hugepages-castle
ExecStartPre=/usr/local/sbin/castle-verify-tuning
ExecStart=/usr/local/bin/castle engine
# All engine threads on the isolated cores; the binary pins its matching and journal threads to
# individual cores inside this set (CASTLE_ISOLATED_CPUS).
CPUAffinity=${ISOLATED_CPUS}
NUMAPolicy=local
LimitMEMLOCK=infinity
LimitNOFILE=1048576
Nice=-10
Restart=on-failure
RestartSec=2s
# A crash-looping engine must stop: failover to the standby is an operator decision.
StartLimitIntervalSec=60
StartLimitBurst=3
ProtectSystem=strict
ReadWritePaths=/var/lib/castle
ProtectHome=yes
PrivateTmp=yes
NoNewPrivileges=yes
PermissionsStartOnly=yes

[Install]
WantedBy=multi-user.target
UNIT

# Housekeeping services stay off the engine cores.
write_file 0644 /etc/systemd/system.conf.d/60-castle-cpuaffinity.conf <<CFG
# Managed by infra/packer/scripts/90-castle-service.sh
[Manager]
CPUAffinity=${HOUSEKEEPING_CPUS}
CFG

run systemctl daemon-reload
