#!/usr/bin/env bash
# Install (once) rsyslog with its TLS stream drivers (gtls + ossl), logger and openssl,
# which the syslog receiver tests use, and print the rsyslogd path on the last line.
# Usage: scripts/rsyslog-deps.sh      (Debian 12; run as root, or with sudo available)
# The tests start their own foreground rsyslogd (rsyslogd -n -f CONF -i PIDFILE);
# this script makes sure the packaged system rsyslog service is NOT left running.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "not root and no sudo: cannot apt-get install" >&2; exit 1; }
    sudo_cmd=(sudo -n env DEBIAN_FRONTEND=noninteractive)
fi

# package -> a file it ships, used to tell whether it is installed
# (the driver modules live in rsyslog's multiarch module dir, found from imtcp.so)
declare -A want
set_want() {
    local moddir
    moddir="$(dpkg -L rsyslog 2>/dev/null | sed -n 's#/rsyslog/imtcp\.so$#/rsyslog#p' | tail -n1 || true)"
    [ -n "$moddir" ] || moddir=/nonexistent
    want=(
        [rsyslog]=/usr/sbin/rsyslogd
        [rsyslog-gnutls]="$moddir/lmnsd_gtls.so"
        [rsyslog-openssl]="$moddir/lmnsd_ossl.so"
        [openssl]=/usr/bin/openssl
        [bsdutils]=/usr/bin/logger
    )
}
set_want

missing=()
for pkg in "${!want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
        || [ ! -e "${want[$pkg]}" ]; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    # Keep the package's maintainer scripts from starting the system service:
    # a policy-rc.d that exits 101 makes invoke-rc.d / deb-systemd-invoke skip starts.
    # (Docker images already have one; only add ours, and remove it, if there is none.)
    policy=/usr/sbin/policy-rc.d
    added_policy=0
    if [ ! -e "$policy" ]; then
        "${sudo_cmd[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
        added_policy=1
    fi
    cleanup() { if [ "$added_policy" = 1 ]; then "${sudo_cmd[@]}" rm -f "$policy"; fi; }
    trap cleanup EXIT
    "${sudo_cmd[@]}" apt-get update >&2
    "${sudo_cmd[@]}" apt-get install -y --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >&2
    cleanup
    trap - EXIT
fi

# If a system rsyslog is running anyway (e.g. it was already installed and enabled),
# stop it so it does not hold /dev/log or the ports; the tests run their own instance.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    for unit in rsyslog.service syslog.socket; do
        if systemctl is-active --quiet "$unit" 2>/dev/null; then
            echo "stopping system $unit" >&2
            "${sudo_cmd[@]}" systemctl stop "$unit" >&2 || true
        fi
    done
fi
if [ -s /run/rsyslogd.pid ]; then
    pid="$(cat /run/rsyslogd.pid)"
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q rsyslogd; then
        echo "stopping system rsyslogd (pid $pid)" >&2
        "${sudo_cmd[@]}" kill "$pid" || true
    fi
fi

set_want
for f in "${want[@]}"; do
    [ -e "$f" ] || { echo "missing after install: $f" >&2; exit 1; }
done

command -v rsyslogd || echo /usr/sbin/rsyslogd
