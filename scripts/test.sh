#!/usr/bin/env bash
# Install what the tests need on a fresh machine, then lint, type-check and run the suite.
#   bash scripts/test.sh [extra pytest arguments]
# OS packages, installed with apt-get when missing and we are root: systemd (for
# systemd-socket-activate in the socket-activation tests), openssl (certificates for the TLS
# tests), curl (a real client in the WSGI tests), util-linux (unshare, for the PID 1 test),
# rpcbind, rpcsvc-proto and libtirpc-dev (rpcinfo, rpcgen and libtirpc for the RPC tests),
# strace (sendfile seen in the wsgi.file_wrapper tests), nginx-light (docs/proxies.md's nginx
# configuration run in front of prefork; its service is not started on install),
# iproute2 (ip netns: the rpcbind registration tests run rpcbind in a namespace of their own),
# wrk (a keep-alive load client: tests/integration/test_nothing_lost.py, scripts/bench*.py),
# postgresql (initdb and pg_ctl for the job pool's throwaway cluster, tests/pgcluster.py).
# Python packages go into .venv from the `test` extra.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v systemd-socket-activate >/dev/null 2>&1 || missing+=(systemd)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)  # also nsenter
command -v ip >/dev/null 2>&1 || missing+=(iproute2)  # ip netns, for rpcbind's namespace
# rpcinfo (the RPC tests ping the servers), rpcgen and the libtirpc headers (a C RPC client).
command -v rpcinfo >/dev/null 2>&1 || [ -x /usr/sbin/rpcinfo ] || missing+=(rpcbind)
command -v rpcgen >/dev/null 2>&1 || missing+=(rpcsvc-proto)
[ -e /usr/include/tirpc/rpc/rpc.h ] || missing+=(libtirpc-dev)
command -v cc >/dev/null 2>&1 || missing+=(gcc)  # builds the rpcgen client
[ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
command -v strace >/dev/null 2>&1 || missing+=(strace)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)  # keep-alive load in test_nothing_lost
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
# PostgreSQL's server programs (initdb, pg_ctl): the job pool's tests start a throwaway cluster
# of their own (tests/pgcluster.py); the package's own cluster service is not started.
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
    || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        # No package may start its service here (nginx would take port 80): policy-rc.d says no.
        no_start=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
            no_start=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
        [ -z "$no_start" ] || rm -f /usr/sbin/policy-rc.d
    else
        echo "note: ${missing[*]} missing and not root: the tests that need them are skipped" >&2
    fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

.venv/bin/ruff check prefork tests workers scripts
.venv/bin/mypy
exec .venv/bin/python -m pytest -n auto "$@"
