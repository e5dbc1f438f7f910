"""The master as PID 1 of a PID namespace (``docker run`` without ``--init``): orphaned
descendants of workers are reaped, the per-worker accounting is not disturbed, TERM stops the
pool.  With --preload the master is a child subreaper and does the same."""

from __future__ import annotations

import os
import shutil
import signal
import socket

import psutil
import pytest

from helpers import LOCAL, ROOT, ServerProcess, server_process, wait_for

REQUESTS = 200


def _ask(address: tuple[str, int]) -> bytes:
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"go\n")
        return sock.makefile("rb").readline()


def _titled(proc: psutil.Process, word: str) -> bool:
    try:
        return word in " ".join(proc.cmdline())
    except psutil.Error:  # a short-lived child, gone already
        return False


def _zombies_under(pid: int) -> int:
    try:
        return sum(1 for p in psutil.Process(pid).children() if p.status() == "zombie")
    except psutil.Error:
        return 0


def _serve_requests(server: ServerProcess, master: int) -> None:
    address = server.tcp_address()
    for _ in range(REQUESTS):
        assert _ask(address) == b"ok\n"
    # The last grandchildren sleep 0.1 s: give them time to end and be collected.
    wait_for(lambda: _zombies_under(master) <= 3, timeout=5,
             what="orphaned grandchildren to be reaped")
    workers = [p for p in psutil.Process(master).children() if _titled(p, "prefork: worker")]
    assert len(workers) == 2, "the workers are untouched"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="a PID namespace needs root and unshare(1)")
def test_as_pid_1_orphans_are_reaped_and_term_stops_the_pool() -> None:
    argv = ["unshare", "--pid", "--fork", "--mount-proc"]
    with server_process("serve", "tests.apps.doublefork:Spawner", "-b", LOCAL, "-w", "2",
                        launcher=argv, env={"PYTHONPATH": str(ROOT)}) as server:
        server.wait_line(r"\[1\] INFO prefork.master: worker 2 \(pid \d+\) ready")
        # unshare forks the namespace's PID 1: the master, seen from here by its title.
        unshare = psutil.Process(server.pid)
        master = wait_for(lambda: next(
            (p for p in unshare.children() if _titled(p, "prefork: master")),
            None), what="the master (PID 1 inside)")
        _serve_requests(server, master.pid)
        os.kill(master.pid, signal.SIGTERM)
        master.wait(timeout=5)
        assert server.wait(timeout=5) == 0


def test_with_preload_the_master_reaps_orphans_as_subreaper() -> None:
    with server_process("serve", "tests.apps.doublefork:Spawner", "-b", LOCAL, "-w", "2",
                        "--preload") as server:
        server.ready_workers(2)
        _serve_requests(server, server.pid)
        server.stop_ok()
