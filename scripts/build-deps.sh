#!/usr/bin/env bash
# Make sure the C toolchain and libraries the build needs are there (Debian 12): librdkafka
# is compiled from source by rdkafka-sys (make, gcc, zlib, OpenSSL for SASL_SSL/TLS to
# Kafka and Event Hubs). Installs only what is missing.
set -euo pipefail
need=()
for pkg in build-essential pkg-config libssl-dev zlib1g-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    echo "installing: ${need[*]}" >&2
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo -n)
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
