#!/usr/bin/env bash
# Install (once) the Azurite blob emulator the tests use, and print its azurite-blob path.
# Usage: scripts/azurite-deps.sh     (installs under ${FLOWGATE_PEERS:-$PWD/.peers}/azurite)
# Needs node + npm. See docs/AZURITE.md for how the tests start it.
set -euo pipefail

version=3.37.0
prefix="${FLOWGATE_PEERS:-$PWD/.peers}/azurite"
mkdir -p "$prefix"
prefix="$(cd "$prefix" && pwd)"
bin="$prefix/node_modules/.bin/azurite-blob"
pkg="$prefix/node_modules/azurite/package.json"

installed="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$pkg" 2>/dev/null | head -n1 || true)"
if [ "$installed" != "$version" ] || [ ! -x "$bin" ]; then
    command -v npm >/dev/null || { echo "npm not found (Node 20+ and npm needed)" >&2; exit 1; }
    npm install --prefix "$prefix" "azurite@$version" --no-audit --no-fund >&2
fi

echo "$bin"
