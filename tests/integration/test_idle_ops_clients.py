"""Idle and trickling clients of the master's control socket and metrics endpoint do not slow
supervision: a killed worker is replaced as fast as without them, and a scrape succeeds."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from helpers import ServerProcess, server_process, wait_for

IDLE_METRICS = 20
IDLE_CONTROL = 10
REPLACED_WITHIN = 0.3  # seconds from SIGKILL to the replacement's "ready" line
READY_RE = r"worker \d+ \(pid (\d+)\) ready"


def master_connections(master: int, metrics_port: int, control: str) -> tuple[int, int]:
    """Established connections the master holds on its metrics port and control socket."""
    conns = psutil.Process(master).net_connections(kind="all")
    tcp = sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED
              and c.laddr and c.laddr[1] == metrics_port)
    # Accepted unix sockets carry the listening socket's path; minus the listener itself.
    unix = sum(1 for c in conns if c.family == socket.AF_UNIX and c.laddr == control) - 1
    return tcp, unix


def read_until_eof(sock: socket.socket) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


@pytest.fixture
def idle_clients() -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


def test_idle_clients_do_not_delay_replacement(
    tmp_path: Path, idle_clients: list[socket.socket]
) -> None:
    control = str(tmp_path / "ctl")
    args = ("serve", "workers.http_hello:Hello", "-b", "127.0.0.1:0", "-w", "2",
            "--metrics", "127.0.0.1:0", "--control", control)
    with server_process(*args) as server:
        server.tcp_address()
        port = int(server.wait_line(r"metrics on http://[^:]+:(\d+)/metrics").group(1))
        workers = server.wait_workers(2)
        old_pids = {w.pid for w in workers}

        for i in range(IDLE_METRICS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            idle_clients.append(sock)
            if i % 4 == 0:
                sock.sendall(b"GET /metr")  # trickling
        for i in range(IDLE_CONTROL):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(control)
            sock.settimeout(10)
            idle_clients.append(sock)
            if i % 3 == 0:
                sock.sendall(b'{"comm')  # trickling
        opened = time.monotonic()
        wait_for(lambda: master_connections(server.pid, port, control)
                 == (IDLE_METRICS, IDLE_CONTROL), timeout=5, interval=0.005,
                 what="the master to hold every idle connection")

        replaced, scrape = kill_a_worker(server, old_pids)

        assert scrape["status"] == 200, scrape
        assert "prefork_pool_size 2" in scrape["body"]
        assert scrape["seconds"] < REPLACED_WITHIN, scrape
        assert replaced < REPLACED_WITHIN, f"replacement took {replaced:.3f} s"
        # The idle clients were still held when the worker died and was replaced ...
        held = time.monotonic() - opened
        with contextlib.suppress(OSError):
            for sock in idle_clients[::4]:
                sock.sendall(b"x")  # ... and still trickling
        # ... and each gets its timeout reply at its deadline.
        for sock in idle_clients[:IDLE_METRICS]:
            assert read_until_eof(sock).startswith(b"HTTP/1.0 408")
        for sock in idle_clients[IDLE_METRICS:]:
            reply = json.loads(read_until_eof(sock))
            assert reply["ok"] is False and "no request" in reply["error"]
        print(f"replacement {replaced * 1000:.1f} ms, scrape {scrape['seconds'] * 1000:.1f} ms"
              f" with {IDLE_METRICS}+{IDLE_CONTROL} idle clients (held {held:.2f} s)")

        server.signal(signal.SIGTERM)
        assert server.wait() == 0


def kill_a_worker(server: ServerProcess, old_pids: set[int]) -> tuple[float, dict[str, object]]:
    """SIGKILL a worker and scrape /metrics meanwhile (in a thread); return the seconds until
    the replacement reported ready, and the scrape's outcome."""
    port = int(server.wait_line(r"metrics on http://[^:]+:(\d+)/metrics").group(1))
    scrape: dict[str, object] = {}

    def scrape_once() -> None:
        start = time.monotonic()
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            scrape["status"] = response.status
            scrape["body"] = response.read().decode()
        scrape["seconds"] = time.monotonic() - start

    victim = min(old_pids)
    seen = len(server.lines)
    killed = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    thread = threading.Thread(target=scrape_once, daemon=True)
    thread.start()
    while True:
        match = server.wait_line(READY_RE, timeout=5, start=seen)
        seen = server.lines.index(match.string) + 1
        if int(match.group(1)) not in old_pids:
            break
    replaced = time.monotonic() - killed
    thread.join(10)
    assert not thread.is_alive()
    return replaced, scrape
