#!/usr/bin/env bash
# Runs every check and test flowgate has. CI calls this (through .ci/run).
#   scripts/test.sh            formatting, lints, then all unit and end-to-end tests
# Test peers are installed here, not by hand: a Python venv with PyPI cefp (the CEF parser
# the tests check our CEF against), mmdb-writer (builds the GeoIP test databases) and
# PyYAML (checks docker/), npm Azurite (the Blob Storage emulator), Debian's rsyslog with
# its TLS drivers (the syslog receiver), dnsmasq (reverse DNS) and prometheus (promtool and
# a scraping server), and tansu (a Kafka broker). With CI=true a test whose peer is
# missing fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/build-deps.sh
FLOWGATE_PYTHON="$(scripts/python-deps.sh)"
FLOWGATE_AZURITE="$(scripts/azurite-deps.sh)"
FLOWGATE_RSYSLOGD="$(scripts/rsyslog-deps.sh | tail -n1)"
FLOWGATE_TANSU="$(scripts/kafka-deps.sh | tail -n1)"
FLOWGATE_DNSMASQ="$(scripts/dns-deps.sh | tail -n1)"
FLOWGATE_PROMETHEUS="$(scripts/prometheus-deps.sh | tail -n1)"
export FLOWGATE_PYTHON FLOWGATE_AZURITE FLOWGATE_RSYSLOGD FLOWGATE_TANSU FLOWGATE_DNSMASQ \
    FLOWGATE_PROMETHEUS

cargo fmt --all -- --check
# The Dockerfile builds with --locked: the lock file must be current.
cargo metadata --locked --format-version 1 >/dev/null
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
