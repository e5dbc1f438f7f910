"""``--threads N`` seen from outside (issue 10 point 2): a worker serves N requests at once,
``prefork status`` shows each thread, ``--timeout`` kills a worker with one hung thread, a
graceful stop finishes the requests in flight on every thread, keep-alive connections come back
from the threads, and a saturated worker leaves new clients to the others.

Real ``python -m prefork serve`` processes; waits are deadlines on observable things.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import LOCAL, ROOT, ServerProcess, pid_alive, server_process, wait_for

APP_SOURCE = '''
import http.server, os, socketserver, threading, time

class Sleep(socketserver.StreamRequestHandler):
    """Reads a number of seconds, sleeps that long, answers "PID THREAD"."""
    def handle(self):
        time.sleep(float(self.rfile.readline() or 0))
        name = threading.current_thread().name
        self.wfile.write(b"%d %s\\n" % (os.getpid(), name.encode()))

class SleepHTTP(http.server.BaseHTTPRequestHandler):
    """GET /SECONDS: sleeps, answers "PID THREAD" over HTTP/1.1 keep-alive."""
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        time.sleep(float(self.path[1:] or 0))
        body = b"%d %s" % (os.getpid(), threading.current_thread().name.encode())
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
'''


@contextlib.contextmanager
def _serve(tmp_path: Path, handler: str, *extra: str) -> Iterator[tuple[ServerProcess, str]]:
    """``threadapp:HANDLER`` with a pid file (for ``prefork status``); (server, pidfile)."""
    (tmp_path / "threadapp.py").write_text(APP_SOURCE)
    pidfile = str(tmp_path / "prefork.pid")
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "PYTHONDONTWRITEBYTECODE": "1"}
    with server_process("serve", f"threadapp:{handler}", "-b", LOCAL, "--pidfile", pidfile,
                        *extra, cwd=tmp_path, env=env) as server:
        wait_for(lambda: os.path.exists(pidfile + ".ctl"), what="the control socket")
        yield server, pidfile


def _status(pidfile: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "prefork", "status", "--pidfile", pidfile,
                           "--json"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    reply: dict[str, Any] = json.loads(proc.stdout)
    return reply


def _ask(address: tuple[str, int], seconds: float) -> socket.socket:
    sock = socket.create_connection(address, timeout=30)
    sock.sendall(b"%.3f\n" % seconds)
    return sock


def _answer(sock: socket.socket) -> tuple[int, str]:
    with sock:
        pid, name = sock.makefile("rb").readline().split()
    return int(pid), name.decode()


def _in_parallel(address: tuple[str, int], seconds: float, count: int) -> list[tuple[int, str]]:
    """``count`` requests sent at once; their answers."""
    socks = [_ask(address, seconds) for _ in range(count)]
    return [_answer(sock) for sock in socks]


def _busy_threads(pidfile: str) -> list[int]:
    return [w.get("busy_threads", 0) for w in _status(pidfile)["workers"]]


def test_four_threads_serve_four_slow_requests_at_once(tmp_path: Path) -> None:
    with _serve(tmp_path, "Sleep", "-w", "1", "--threads", "4") as (server, pidfile):
        address = server.tcp_address()
        worker = server.wait_workers(1)[0].pid
        started = time.monotonic()
        answers = _in_parallel(address, 0.5, 4)
        elapsed = time.monotonic() - started
        assert elapsed < 1.0, f"four 0.5 s requests took {elapsed:.2f} s"
        assert {pid for pid, _ in answers} == {worker}
        assert len({name for _, name in answers}) == 4  # four handler threads

        # While four long requests run, status shows each of the four threads busy.
        socks = [_ask(address, 5.0) for _ in range(4)]
        wait_for(lambda: _busy_threads(pidfile) == [4], timeout=4, interval=0.05,
                 what="status to show 4 busy threads")
        row = _status(pidfile)["workers"][0]
        assert row["state"] == "busy"
        assert [t["state"] for t in row["threads"]] == ["busy"] * 4
        assert all(t["request_age"] is not None for t in row["threads"])
        assert row["request_age"] == max(t["request_age"] for t in row["threads"])  # oldest
        assert all(_answer(sock)[0] == worker for sock in socks)
        status = _status(pidfile)
        assert status["workers"][0]["busy_threads"] == 0
        assert status["workers"][0]["state"] == "idle"
        assert status["workers"][0]["requests"] == 8
        server.stop_ok()


def test_timeout_kills_a_worker_with_one_hung_thread(tmp_path: Path) -> None:
    with _serve(tmp_path, "Sleep", "-w", "1", "--threads", "4",
                "--timeout", "1") as (server, pidfile):
        address = server.tcp_address()
        old = server.wait_workers(1)[0].pid
        hung = _ask(address, 60.0)
        # The other threads keep serving, and are idle in between.
        assert _answer(_ask(address, 0.0))[0] == old
        threads = _status(pidfile)["workers"][0]["threads"]
        assert sorted(t["state"] for t in threads) == ["busy", "idle", "idle", "idle"]
        server.wait_line(rf"worker 1 \(pid {old}\) request in flight for [\d.]+ s "
                         r"\(timeout 1\.0 s\): dumping its stack", timeout=10)
        wait_for(lambda: not pid_alive(old), timeout=5, what="the hung worker to be killed")
        assert hung.recv(100) == b""  # the connection died with the worker
        hung.close()
        new = server.wait_workers(1)[0].pid
        assert new != old
        assert _answer(_ask(address, 0.0))[0] == new
        server.stop_ok()


def test_graceful_stop_finishes_the_requests_on_every_thread(tmp_path: Path) -> None:
    with _serve(tmp_path, "Sleep", "-w", "1", "--threads", "4") as (server, pidfile):
        address = server.tcp_address()
        worker = server.wait_workers(1)[0].pid
        socks = [_ask(address, 1.5) for _ in range(3)]
        wait_for(lambda: _busy_threads(pidfile) == [3], timeout=4, interval=0.05,
                 what="three busy threads")
        server.signal(signal.SIGTERM)
        answers = [_answer(sock) for sock in socks]
        assert [pid for pid, _ in answers] == [worker] * 3
        assert len({name for _, name in answers}) == 3
        assert server.wait() == 0, server.text()
        assert not pid_alive(worker)


def test_quick_stop_leaves_busy_threads_at_once(tmp_path: Path) -> None:
    with _serve(tmp_path, "Sleep", "-w", "1", "--threads", "2") as (server, pidfile):
        address = server.tcp_address()
        worker = server.wait_workers(1)[0].pid
        socks = [_ask(address, 60.0) for _ in range(2)]
        wait_for(lambda: _busy_threads(pidfile) == [2], timeout=4, interval=0.05,
                 what="two busy threads")
        started = time.monotonic()
        server.signal(signal.SIGINT)
        assert server.wait() == 0, server.text()
        assert time.monotonic() - started < 2.0  # not the quick_timeout's KILL
        assert not pid_alive(worker)
        for sock in socks:
            with sock:
                assert sock.recv(100) == b""


def _get(sock: socket.socket, reader: Any, seconds: float) -> bytes:
    sock.sendall(b"GET /%.3f HTTP/1.1\r\nHost: x\r\n\r\n" % seconds)
    status = reader.readline()
    assert status.startswith(b"HTTP/1.1 200"), status
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    body: bytes = reader.read(length)
    return body


def test_keep_alive_connections_come_back_from_the_threads(tmp_path: Path) -> None:
    with _serve(tmp_path, "SleepHTTP", "-w", "1", "--threads", "4") as (server, pidfile):
        address = server.tcp_address()
        worker = server.wait_workers(1)[0].pid
        bodies: list[list[bytes]] = [[] for _ in range(4)]

        def client(index: int) -> None:
            with socket.create_connection(address, timeout=30) as sock:
                reader = sock.makefile("rb")
                for _ in range(3):  # three requests on one connection, each 0.3 s
                    bodies[index].append(_get(sock, reader, 0.3))

        started = time.monotonic()
        clients = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(30)
        elapsed = time.monotonic() - started
        # 12 requests of 0.3 s: 3.6 s one at a time, about 0.9 s on four threads.
        assert elapsed < 2.5, f"took {elapsed:.2f} s"
        assert all(len(b) == 3 for b in bodies)
        assert {int(b.split()[0]) for bs in bodies for b in bs} == {worker}
        assert _status(pidfile)["workers"][0]["requests"] == 12
        server.stop_ok()


@pytest.mark.parametrize("app", ["threadapp:SleepHTTP", "tests.apps.wsgi_plain:application"])
def test_back_to_back_requests_on_one_kept_alive_connection_never_wait(
        tmp_path: Path, app: str) -> None:
    # The client sends each request as soon as the last answer is in, so the request often
    # arrives while the connection is still with its handler thread: the loop must not take
    # that event and drop it (the connection would wait for keep_alive, then close).
    (tmp_path / "threadapp.py").write_text(APP_SOURCE)
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "PYTHONDONTWRITEBYTECODE": "1"}
    path = "/0" if "Sleep" in app else "/hello"
    with server_process("serve", app, "-b", LOCAL, "-w", "1", "--threads", "4",
                        cwd=tmp_path, env=env) as server:
        server.wait_workers(1)
        with socket.create_connection(server.tcp_address(), timeout=3) as sock:
            reader = sock.makefile("rb")
            for i in range(400):
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                status = reader.readline()
                assert status.startswith(b"HTTP/1.1 200"), (i, status)  # (not a timeout)
                length = 0
                while (line := reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                reader.read(length)
        server.stop_ok()


def test_a_saturated_worker_leaves_new_clients_to_the_others(tmp_path: Path) -> None:
    with _serve(tmp_path, "Sleep", "-w", "2", "--threads", "2") as (server, pidfile):
        address = server.tcp_address()
        server.wait_workers(2)
        socks = []
        for busy in range(1, 5):  # one at a time, so each lands where there is room
            socks.append(_ask(address, 5.0))
            wait_for(lambda n=busy: sum(_busy_threads(pidfile)) == n, timeout=4,
                     interval=0.05, what=f"{busy} busy threads")
        # A worker that accepted past its two threads would leave the other with one busy.
        assert _busy_threads(pidfile) == [2, 2]
        for sock in socks:
            _answer(sock)
        server.stop_ok()


@pytest.mark.parametrize("threads", ["1", "4"])
def test_keep_alive_clients_that_reset_do_not_crash_the_worker(
    tmp_path: Path, threads: str,
) -> None:
    with _serve(tmp_path, "SleepHTTP", "-w", "1", "--threads", threads) as (server, pidfile):
        address = server.tcp_address()
        worker = server.wait_workers(1)[0].pid
        for _ in range(20):  # a request, then a reset while the connection is held
            with socket.create_connection(address, timeout=10) as sock:
                assert _get(sock, sock.makefile("rb"), 0.0).split()[0] == str(worker).encode()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with socket.create_connection(address, timeout=10) as sock:
            assert _get(sock, sock.makefile("rb"), 0.0).split()[0] == str(worker).encode()
        assert "crashed" not in server.text()
        assert _status(pidfile)["workers"][0]["pid"] == worker
        server.stop_ok()


def test_max_requests_counts_the_requests_of_all_threads(tmp_path: Path) -> None:
    with _serve(tmp_path, "Sleep", "-w", "1", "--threads", "3",
                "--max-requests", "6") as (server, _):
        address = server.tcp_address()
        old = server.wait_workers(1)[0].pid
        assert {pid for pid, _ in _in_parallel(address, 0.2, 3)} == {old}
        assert {pid for pid, _ in _in_parallel(address, 0.2, 3)} == {old}
        server.wait_line(rf"worker 1 \(pid {old}\) due for recycling", timeout=10)
        wait_for(lambda: not pid_alive(old), timeout=10, what="the recycled worker to go")
        assert _answer(_ask(address, 0.0))[0] != old
        server.stop_ok()
