#!/usr/bin/env bash
# Create (once) a virtualenv with the Python tools the tests use, and print its python.
# Usage: scripts/python-deps.sh            (venv at ${FLOWGATE_VENV:-$PWD/.venv})
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FLOWGATE_VENV:-$PWD/.venv}"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || {
        echo "python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
        exit 1
    }
fi

"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --require-hashes -r "$root/tests/tools/requirements.txt" >&2

echo "$venv/bin/python"
