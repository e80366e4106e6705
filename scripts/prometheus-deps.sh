#!/usr/bin/env bash
# Install (once) Debian's prometheus (the server and promtool) for the metrics tests, and print the prometheus path (promtool is next to it) on the last line.
# Usage: scripts/prometheus-deps.sh      (Debian 12; run as root, or with sudo available)
# The tests run `promtool check metrics` on flowgate's live /metrics and a foreground
#   prometheus --config.file=CONF --storage.tsdb.path=DIR --web.listen-address=127.0.0.1:PORT
# that scrapes flowgate, then query its HTTP API.
# The packages' own services are not started (a policy-rc.d that exits 101), and stopped
# if they run anyway: the tests start their own instances on free ports.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "not root and no sudo: cannot apt-get install" >&2; exit 1; }
    sudo_cmd=(sudo -n env DEBIAN_FRONTEND=noninteractive)
fi

declare -A want=([prometheus]=/usr/bin/prometheus)
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

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    for unit in prometheus.service prometheus-node-exporter.service; do
        if systemctl is-active --quiet "$unit" 2>/dev/null; then
            echo "stopping system $unit" >&2
            "${sudo_cmd[@]}" systemctl stop "$unit" >&2 || true
        fi
    done
fi

for f in /usr/bin/prometheus /usr/bin/promtool; do
    [ -x "$f" ] || { echo "missing after install: $f" >&2; exit 1; }
done
echo /usr/bin/prometheus
