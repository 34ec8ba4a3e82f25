#!/usr/bin/env bash
# chrony on the Amazon Time Sync Service: the link-local NTP endpoint (169.254.169.123) and, where the ENA
# driver exposes it, the PTP hardware clock (/dev/ptp0) which gives microsecond-accurate time for event
# timestamps. Public pools are removed: Amazon Time Sync smears leap seconds and must not be mixed
# with non-smearing sources.
source "$(dirname "$0")/lib.sh"

run apt-get install -y --no-install-recommends chrony

write_file 0644 /etc/chrony/conf.d/10-castle-amazon-time-sync.conf <<'CFG'
# Managed by infra/packer/scripts/60-chrony.sh
server 169.254.169.123 prefer iburst minpoll 4 maxpoll 4
# ENA PTP hardware clock (needs the ena module with phc_enable=1, see 70-ena.sh). Ignored if absent.
refclock PHC /dev/ptp0 poll 0 delay 0.000010 prefer
makestep 1.0 3
rtcsync
CFG

# Drop Debian's default pool so that only Amazon Time Sync sources are used.
chrony_conf="$(target /etc/chrony/chrony.conf)"
if [ -f "$chrony_conf" ]; then
  sed -i 's/^\(pool \|server \)/# disabled by castle: \1/' "$chrony_conf"
else
  write_file 0644 /etc/chrony/chrony.conf <<'CFG'
# Managed by infra/packer/scripts/60-chrony.sh
confdir /etc/chrony/conf.d
driftfile /var/lib/chrony/chrony.drift
ntsdumpdir /var/lib/chrony
logdir /var/log/chrony
maxupdateskew 100.0
leapsectz right/UTC
CFG
fi

run systemctl enable chrony.service
