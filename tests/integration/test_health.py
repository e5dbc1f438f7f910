"""The probes and scaling signals of issue 12 on a real pool: /healthz and /readyz follow WINCH
and HUP, and connections waiting for a paused pool show in the accept-queue metric."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from helpers import free_port, http_get, server_process, wait_for

QUEUED = 30
PROBE_DEADLINE = 2.0  # seconds the readiness probe may take to follow a signal


def probe(port: int, path: str) -> int:
    return http_get("127.0.0.1", port, path=path)[0]


def listen_queues(port: int) -> dict[str, float]:
    status, body = http_get("127.0.0.1", port, path="/metrics")
    assert status == 200
    return {
        s.labels["listener"]: s.value
        for family in text_string_to_metric_families(body.decode())
        if family.name == "prefork_listen_queue" for s in family.samples
    }


def test_ready_follows_winch_and_hup_and_the_queue_shows_waiting_clients(
    tmp_path: Path,
) -> None:
    port, address = free_port(), ("127.0.0.1", free_port())
    unix_path = tmp_path / "web.sock"
    args = ("serve", "workers.http_hello:Hello", "-b", f"127.0.0.1:{address[1]}",
            "-b", f"unix:{unix_path}", "-w", "2", "--metrics", f"127.0.0.1:{port}")
    with server_process(*args) as server:
        server.wait_workers(2)
        assert probe(port, "/healthz") == 200
        wait_for(lambda: probe(port, "/readyz") == 200, what="ready once the pool serves")

        server.signal(signal.SIGWINCH)
        paused_at = time.monotonic()
        wait_for(lambda: probe(port, "/readyz") == 503, timeout=PROBE_DEADLINE,
                 what=f"/readyz 503 within {PROBE_DEADLINE} s of WINCH")
        assert time.monotonic() - paused_at < PROBE_DEADLINE
        assert probe(port, "/healthz") == 200  # the master is alive, just not serving
        wait_for(lambda: not server.live(), what="the paused pool's workers gone")

        clients = [socket.create_connection(address, timeout=10) for _ in range(QUEUED)]
        for _ in range(QUEUED):
            unix_client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            unix_client.settimeout(10)
            unix_client.connect(str(unix_path))
            clients.append(unix_client)
        try:
            for client in clients:  # their requests wait in the socket buffers
                client.sendall(b"GET / HTTP/1.0\r\n\r\n")
            queues = wait_for(lambda: (q := listen_queues(port)) and min(q.values()) >= 20 and q,
                              what="both accept queues at >= 20")
            assert len(queues) == 2, queues
            assert all(value == QUEUED for value in queues.values()), queues
            assert probe(port, "/readyz") == 503

            server.signal(signal.SIGHUP)
            wait_for(lambda: probe(port, "/readyz") == 200, timeout=15,
                     what="/readyz 200 again after HUP")
            for client in clients:  # the waiting clients are served, not lost
                assert client.recv(65536).startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))
        finally:
            for client in clients:
                client.close()
        wait_for(lambda: max(listen_queues(port).values()) == 0,
                 what="the accept queues drained after HUP")
        server.stop_ok()


def test_ready_is_503_while_stopping_and_health_stays_200() -> None:
    port = free_port()
    args = ("serve", "tests.apps.slow:Slow", "-b", "127.0.0.1:0", "-w", "1",
            "--graceful-timeout", "20", "--metrics", f"127.0.0.1:{port}")
    with server_process(*args) as server:
        address = server.tcp_address()
        server.wait_workers(1)
        with socket.create_connection(address, timeout=10) as slow:
            slow.sendall(b"3\n")
            assert slow.recv(64).startswith(b"started")
            server.signal(signal.SIGTERM)  # graceful: the request in flight finishes
            wait_for(lambda: probe(port, "/readyz") == 503, timeout=PROBE_DEADLINE,
                     what="/readyz 503 while stopping")
            assert probe(port, "/healthz") == 200
            assert slow.recv(64).startswith(b"done")
        assert server.wait() == 0
