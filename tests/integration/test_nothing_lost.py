"""Nothing lost when workers retire (issue 18, "Done when"): keep-alive clients -- http.client,
httpx and wrk (when installed) at once -- see 0 failed requests across 20 HUPs 0.5 s apart,
across ``--max-requests 200`` recycling, across TTOU, and across WINCH.

WINCH stops every worker and keeps the master and its listening sockets: a retiring worker
answers what its kept-alive connections send during its grace with ``Connection: close``, the
clients' new connections wait in the kernel's queue of the listener the master keeps, and the
workers that TTIN (or HUP) starts serve them.  So a client sees a pause, not an error."""

from __future__ import annotations

import signal
import time

import pytest

from helpers import LOCAL, server_process, wait_for
from keepalive_load import WRK, Load, keep_alive_load

WSGI = "workers.wsgi_hello:app"
HTTP = "workers.http_hello:Hello"


def flowing(load: Load, more: int = 100, timeout: float = 15.0) -> None:
    """Wait until the clients got ``more`` answers than now."""
    before = load.done
    wait_for(lambda: load.done >= before + more, timeout, what=f"{more} more answers")


def test_twenty_reloads_half_a_second_apart() -> None:
    with server_process("serve", WSGI, "-b", LOCAL, "-w", "2", "--graceful-timeout",
                        "5") as server:
        address = server.tcp_address()
        server.ready_workers(2)
        start = server.mark()
        with keep_alive_load(address, wrk_seconds=12) as load:
            flowing(load)
            began = time.monotonic()
            for count in range(20):
                # The storm's own pace (a HUP during a reload is queued by the master).
                wait_for(lambda c=count: time.monotonic() >= began + 0.5 * c, what="the pace")
                server.signal(signal.SIGHUP)
            server.wait_line(r"generation \d+ ready; generation \d+ retiring", 20, start)
            wait_for(lambda: time.monotonic() >= began + 12.5, 20, what="wrk's run")
            flowing(load)
        assert len(server.ready_pids(start)) >= 4, "the reloads started new workers"
        assert not load.failures, load.report()


@pytest.mark.parametrize("app", [WSGI, HTTP])
def test_recycling_every_200_requests(app: str) -> None:
    with server_process("serve", app, "-b", LOCAL, "-w", "2", "--max-requests", "200",
                        "--max-requests-jitter", "0") as server:
        address = server.tcp_address()
        server.ready_workers(2)
        start = server.mark()
        with keep_alive_load(address, wrk_seconds=4) as load:
            wait_for(lambda: len(server.ready_pids(start)) >= 6, 30, what="six recycled")
            wait_for(lambda: load.wrk or WRK is None, 30, what="wrk's end")
        assert not load.failures, load.report()


def test_scaling_down_with_ttou() -> None:
    with server_process("serve", WSGI, "-b", LOCAL, "-w", "4", "--graceful-timeout",
                        "5") as server:
        address = server.tcp_address()
        server.ready_workers(4)
        with keep_alive_load(address, wrk_seconds=3) as load:
            for count in (3, 2, 1):
                flowing(load)
                server.signal(signal.SIGTTOU)
                wait_for(lambda c=count: len(server.live()) == c, 15, what=f"{count} workers")
            flowing(load)
            wait_for(lambda: load.wrk or WRK is None, 30, what="wrk's end")
        assert not load.failures, load.report()


@pytest.mark.parametrize("app", [WSGI, HTTP])
def test_winch_pauses_and_ttin_resumes(app: str) -> None:
    with server_process("serve", app, "-b", LOCAL, "-w", "2", "--graceful-timeout",
                        "5") as server:
        address = server.tcp_address()
        first = server.ready_workers(2)
        with keep_alive_load(address, wrk_seconds=4) as load:
            flowing(load)
            server.signal(signal.SIGWINCH)
            wait_for(lambda: not server.live(), 15, what="every worker stopped")
            paused = load.done
            start = server.mark()
            server.signal(signal.SIGTTIN)  # (HUP resumes too)
            server.wait_line(r"worker \d+ \(pid \d+\) ready", 15, start)
            flowing(load)
            wait_for(lambda: load.wrk or WRK is None, 30, what="wrk's end")
        assert not (server.ready_pids(start) & first)
        assert load.done > paused
        assert not load.failures, load.report()
