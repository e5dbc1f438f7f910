"""Workers that misbehave in ways the master must handle truthfully (issue 11, points 7 and 8):
a request that allocates without bound is stopped in the middle of it, near ``--max-memory``;
a worker frozen with SIGSTOP is killed by ``--timeout`` and the log says that no stack dump can
come; a handler that ends its worker in every request is a crash, never a boot failure.

Each test runs ``prefork serve tests.apps.runaway:...`` as a real process and looks at what a
user would see: the log, pids coming and going, ``prefork status``, bytes on the socket.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from helpers import LOCAL, ROOT, server_process, wait_for, wait_gone

APP = "tests.apps.runaway:Runaway"
LIMIT_MB = 100


def _ask(address: tuple[str, int], command: bytes) -> tuple[socket.socket, int]:
    """Send one command line; the connection (still open) and the serving worker's pid."""
    sock = socket.create_connection(address, timeout=15)
    sock.sendall(command + b"\n")
    return sock, int(sock.makefile("rb").readline())


def _peak_rss_mb(pid: int, timeout: float) -> int:
    """The highest resident size process ``pid`` reached (its VmHWM), read until it is gone."""
    peak = [0]

    def gone() -> bool:
        try:
            with open(f"/proc/{pid}/status") as f:
                match = re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.MULTILINE)
        except OSError:
            return True
        if match is None:  # a zombie: its memory is released
            return True
        peak[0] = max(peak[0], int(match.group(1)) // 1024)
        return False

    wait_for(gone, timeout, interval=0.002, what=f"worker {pid} to be killed")
    return peak[0]


def _status(pidfile: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "prefork", "status", "--pidfile", pidfile,
                           "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    reply: dict[str, Any] = json.loads(proc.stdout)
    return reply


def test_a_request_allocating_shared_memory_without_bound_is_stopped_by_the_master() -> None:
    with server_process("serve", APP, "-b", LOCAL, "-w", "1",
                        "--max-memory", str(LIMIT_MB)) as server:
        address = server.tcp_address()
        old = server.ready_workers(1).pop()
        sock, pid = _ask(address, b"shmhog")  # shared memory: past the budget's reach
        assert pid == old
        peak = _peak_rss_mb(old, timeout=20)
        server.wait_line(rf"worker 1 \(pid {old}\) request in flight for [\d.]+ s at \d+ MB, "
                         rf"over 2x max_memory \({LIMIT_MB} MB\): dumping its stack, then "
                         r"killing it")
        server.wait_line(r'File ".*runaway\.py", line \d+ in handle$')  # the stack, dumped
        # ~800 MB/s here; the master looks every 20 ms once a request is over the limit.
        assert peak < 4 * LIMIT_MB, f"peak {peak} MB"
        assert sock.recv(10) == b""  # the request died with its worker
        sock.close()
        new = server.ready_workers(1).pop()
        assert new != old
        assert _ask(address, b"pid")[1] == new
        server.stop_ok()


def test_a_request_over_the_limit_for_too_long_is_stopped() -> None:
    with server_process("serve", APP, "-b", LOCAL, "-w", "1",
                        "--max-memory", str(LIMIT_MB)) as server:
        address = server.tcp_address()
        old = server.ready_workers(1).pop()
        # Over the limit with what the worker had, under the 2x rule and under the budget
        # (1.5x the limit for all of its RSS, core/memguard.py).
        sock, _ = _ask(address, b"hold %d" % (LIMIT_MB + LIMIT_MB // 10))
        server.wait_line(rf"worker 1 \(pid {old}\) request in flight for [\d.]+ s at \d+ MB, "
                         rf"over max_memory \({LIMIT_MB} MB\) for 3 s: dumping its stack",
                         timeout=15)
        wait_gone({old}, "the worker over its limit")
        assert sock.recv(10) == b""
        sock.close()
        server.stop_ok()


def test_a_stopped_worker_is_killed_by_the_timeout_without_a_dump_promise(
    tmp_path: Path,
) -> None:
    pidfile = str(tmp_path / "prefork.pid")
    with server_process("serve", APP, "-b", LOCAL, "-w", "1", "--timeout", "1",
                        "--pidfile", pidfile) as server:
        address = server.tcp_address()
        old = server.ready_workers(1).pop()
        sock, _ = _ask(address, b"wait")
        os.kill(old, signal.SIGSTOP)
        rows = _status(pidfile)["workers"]
        assert [(r["pid"], r["state"]) for r in rows] == [(old, "stopped")]
        server.wait_line(rf"worker 1 \(pid {old}\) request in flight for [\d.]+ s \(timeout "
                         r"1\.0 s\), and it is stopped \(SIGSTOP\?\): no stack dump can come; "
                         r"killing it", timeout=10)
        wait_gone({old}, "the stopped worker")
        assert sock.recv(10) == b""
        sock.close()
        new = server.ready_workers(1).pop()
        assert _ask(address, b"pid")[1] == new
        assert "dumping its stack" not in server.text()
        assert _status(pidfile)["master"]["restarts"] == {"timeout": 1}
        server.stop_ok()


def test_a_handler_ending_its_worker_in_every_request_is_a_crash_not_a_boot_failure() -> None:
    with server_process("serve", "tests.apps.runaway:ExitEveryTime", "-b", LOCAL,
                        "-w", "2") as server:
        address = server.tcp_address()
        server.ready_workers(2)
        answers: list[bytes] = []

        def client() -> None:
            for _ in range(40):
                with socket.create_connection(address, timeout=15) as sock:
                    sock.sendall(b"x\n")
                    answers.append(sock.recv(10))

        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert answers == [b""] * 320  # each request ended its worker...
        wait_for(lambda: server.text().count(": exit status 1") >= 320, timeout=15,
                 what="320 exits logged")
        # ... and every one of them had reported ready first: never a boot failure, however
        # the ready report and the exit fell across the master's turns (before the fix, about
        # 1 in 100 here).
        assert server.text().count("died: exit status 1; replacing it") == 320
        assert "failed to boot" not in server.text()
        server.ready_workers(2)
        server.stop_ok()
