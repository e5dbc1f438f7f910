"""``--worker-connections`` sized from the fd limit by default (issue 19, point 6): the master
raises its soft RLIMIT_NOFILE to the hard one, and each worker may hold that many waiting
connections less a reserve.  Before, the default was 1000 per worker: 2 100 idle connections
on a 2-worker pool left a fresh client queued behind them until they timed out."""

from __future__ import annotations

import resource
import shutil
import socket

import pytest

from helpers import LOCAL, http_get, in_child, server_process
from prefork.core import fdlimit

IDLE = 2100  # more than the old default of 1000 per worker, on 2 workers, within the backlog
SERVER_NOFILE = (1024, 4096)  # the server starts with soft 1024; the master raises it to 4096
APP = "tests.apps.breakers:Breaker"


def _own_fds(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed and hard >= needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < needed:
        pytest.skip(f"needs an fd limit of {needed} for the test's own idle connections")


def test_idle_connections_beyond_the_old_default_leave_fresh_clients_answered() -> None:
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        pytest.skip("needs prlimit (util-linux) to start the server with a low soft fd limit")
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < SERVER_NOFILE[1]:
        pytest.skip(f"needs a hard fd limit of at least {SERVER_NOFILE[1]}")
    _own_fds(IDLE + 200)
    launcher = (prlimit, f"--nofile={SERVER_NOFILE[0]}:{SERVER_NOFILE[1]}", "--")
    with server_process("serve", APP, "-b", LOCAL, "-w", "2", "--client-timeout", "120",
                        launcher=launcher) as server:
        address = server.tcp_address()
        server.ready_workers(2)
        idle: list[socket.socket] = []
        try:
            for _ in range(IDLE):  # each sends part of a head: accepted, then waiting
                sock = socket.create_connection(address, timeout=15)
                sock.sendall(b"G")
                idle.append(sock)
            for _ in range(5):
                status, _body = http_get(*address, path="/pid", timeout=15)
                assert status == 200
        finally:
            for sock in idle:
                sock.close()


def _sized_under(limits: tuple[int, int]) -> list[int]:
    resource.setrlimit(resource.RLIMIT_NOFILE, limits)
    before, after = fdlimit.raise_soft_limit()
    return [before, after, fdlimit.connections_bound(0), fdlimit.connections_bound(7)]


def test_the_soft_limit_is_raised_and_the_default_follows_it() -> None:
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < SERVER_NOFILE[1]:
        pytest.skip(f"needs a hard fd limit of at least {SERVER_NOFILE[1]}")
    # 4096 less 1/8; a configured value is kept.
    assert in_child(lambda: _sized_under(SERVER_NOFILE)) == [1024, 4096, 3584, 7]
    # Already at the hard limit: 256 less the minimum reserve of 64.
    assert in_child(lambda: _sized_under((256, 256))) == [256, 256, 192, 7]
