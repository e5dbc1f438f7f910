"""systemd integration: socket activation with systemd's own ``systemd-socket-activate``,
and sd_notify messages (READY, RELOADING, STOPPING) to a socket playing systemd.

Every server is a real ``python -m prefork serve`` in its own session (see helpers.py);
waits are deadlines on observable things (log lines, pids, bytes received), never sleeps.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest

from helpers import (
    LOCAL,
    ROOT,
    ServerProcess,
    free_port,
    http_get,
    server_process,
    wait_for,
    wait_gone,
)

PID_APP = "tests.apps.liveops:PidHello"


# -- socket activation -----------------------------------------------------------------------------


def _listening_or_exited(proc: ServerProcess, port: int) -> bool:
    if proc.returncode is not None:
        return True
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_socket_activation_with_systemd_socket_activate() -> None:
    tool = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"
    if not os.access(tool, os.X_OK):
        pytest.skip("systemd-socket-activate is not installed")
    for _ in range(5):  # the port picked may be taken by someone else before the tool binds it
        port = free_port()
        launcher = [tool, "-l", f"127.0.0.1:{port}", "-E", f"PYTHONPATH={ROOT}"]
        proc = ServerProcess("serve", "workers.http_hello:Hello", "-w", "2", launcher=launcher)
        try:
            wait_for(lambda p=proc, n=port: _listening_or_exited(p, n),  # type: ignore[misc]
                     what="systemd-socket-activate to listen")
            if proc.returncode is not None:
                continue  # it could not listen: try another port
            # The first connection makes the tool exec prefork with the socket as fd 3.
            assert http_get("127.0.0.1", port) == (200, b"Hello, world!\n")
            line = proc.wait_line(r"serving workers.http_hello:Hello on (\S+) ")
            assert line.group(1) == f"http://127.0.0.1:{port}/"
            assert proc.wait_line(r"Execing ")  # the tool's own line: prefork was socket-activated
            workers = proc.ready_workers(2)
            assert proc.pid == int(proc.wait_line(r"master \(pid (\d+)\) starting").group(1))
            for _ in range(10):
                assert http_get("127.0.0.1", port) == (200, b"Hello, world!\n")
            proc.signal(signal.SIGTERM)
            assert proc.wait() == 0
            wait_gone(workers, "the workers")
            return
        finally:
            proc.cleanup()
    pytest.fail("no free port systemd-socket-activate could listen on in 5 attempts")


# -- sd_notify -------------------------------------------------------------------------------------


def _notification(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def test_sd_notify_ready_reloading_stopping(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    if len(path) >= 100:  # sun_path limit
        pytest.skip("tmp_path too long for a unix socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(15)
        with server_process("serve", PID_APP, "-b", LOCAL, "-w", "2",
                            env={"NOTIFY_SOCKET": path}) as server:
            ready = _notification(sock)
            assert ready["READY"] == "1", ready
            assert "2 workers, generation 1" in ready["STATUS"]
            # Sent once the pool is ready: the master logged both workers ready before it.
            assert len(server.ready_workers(2, timeout=5)) == 2

            before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            server.signal(signal.SIGHUP)
            reloading = _notification(sock)
            after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            assert reloading["RELOADING"] == "1", reloading
            assert before <= int(reloading["MONOTONIC_USEC"]) <= after
            ready_again = _notification(sock)
            assert ready_again["READY"] == "1", ready_again
            assert "generation 2" in ready_again["STATUS"]
            assert server.wait_line(r"generation 2 ready; generation 1 retiring", timeout=1)

            server.signal(signal.SIGTERM)
            stopping = _notification(sock)
            assert stopping["STOPPING"] == "1", stopping
            assert server.wait() == 0
            # Anything after that is STOPPING again, never READY.
            sock.settimeout(0)
            rest = []
            with contextlib.suppress(BlockingIOError):
                while True:
                    rest.append(_notification(sock))
            assert all("STOPPING" in message for message in rest), rest
