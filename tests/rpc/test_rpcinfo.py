"""rpcinfo (from rpcbind) pings the pool's RPC servers: NULL over TCP and UDP, every version,
and a wrong version gets the real low/high.

``rpcinfo -n PORT -t HOST ...`` still asks rpcbind (port 111) first with rpcbind 1.2.6, so the
tests name the server's universal address with ``-a ADDR -T tcp|udp``, which does not."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator

import psutil
import pytest
from apps.rpc_calc import PROG, CalcTCP, CalcUDP

import prefork
from helpers import wait_for


def worker_pids() -> list[int]:
    return [c.pid for c in psutil.Process().children() if c.status() != psutil.STATUS_ZOMBIE]

RPCINFO = shutil.which("rpcinfo") or next(
    (p for p in ("/usr/sbin/rpcinfo", "/sbin/rpcinfo") if os.access(p, os.X_OK)), None)
pytestmark = pytest.mark.skipif(RPCINFO is None, reason="rpcinfo (package rpcbind) not installed")


@contextlib.contextmanager
def pool(kind: str) -> Iterator[str]:
    """A two-worker pool serving Calc over ``kind``; its universal address (h1.h2.h3.h4.p1.p2)."""
    server: prefork.PreforkTCPServer | prefork.PreforkUDPServer
    if kind == "tcp":
        server = prefork.PreforkTCPServer(("127.0.0.1", 0), CalcTCP, workers=2)
    else:
        server = prefork.PreforkUDPServer(("127.0.0.1", 0), CalcUDP, workers=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        # rpcinfo runs only once the pool is complete: a worker forked while Popen waits on
        # its exec pipe would hold that pipe open (and Popen waiting) until it exits.
        wait_for(lambda: len(worker_pids()) == 2, what="two workers")
        yield f"127.0.0.1.{port >> 8}.{port & 0xFF}"
    finally:
        server.shutdown()
        thread.join(30)
        server.server_close()


def rpcinfo(*args: str) -> subprocess.CompletedProcess[str]:
    assert RPCINFO is not None
    return subprocess.run([RPCINFO, *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("kind", ["tcp", "udp"])
def test_rpcinfo_ready_and_waiting(kind: str) -> None:
    with pool(kind) as uaddr:
        done = rpcinfo("-a", uaddr, "-T", kind, str(PROG), "2")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"program {PROG} version 2 ready and waiting"
        # Without a version rpcinfo probes version 0, learns the range, pings each.
        every = rpcinfo("-a", uaddr, "-T", kind, str(PROG))
        assert every.returncode == 0, every.stderr
        assert every.stdout.split("\n")[:3] == [
            f"program {PROG} version {v} ready and waiting" for v in (1, 2, 3)]


@pytest.mark.parametrize("kind", ["tcp", "udp"])
def test_rpcinfo_wrong_version_gets_the_real_range(kind: str) -> None:
    with pool(kind) as uaddr:
        done = rpcinfo("-a", uaddr, "-T", kind, str(PROG), "7")
        assert done.returncode == 1
        assert "low version = 1, high version = 3" in done.stderr
        assert f"program {PROG} version 7 is not available" in done.stdout
