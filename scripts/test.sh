#!/usr/bin/env bash
# Install what the tests need on a fresh machine, then lint, type-check and run the suite.
#   bash scripts/test.sh [extra pytest arguments]
# OS packages: systemd (for systemd-socket-activate in the socket-activation tests), installed
# with apt-get when missing and we are root. Python packages go into .venv from the `test` extra.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v systemd-socket-activate >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
    else
        echo "note: systemd-socket-activate missing and not root: its tests will be skipped" >&2
    fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

.venv/bin/ruff check prefork tests workers scripts
.venv/bin/mypy
exec .venv/bin/python -m pytest -n auto "$@"
