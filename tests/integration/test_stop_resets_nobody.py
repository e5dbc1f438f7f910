"""A graceful stop resets nobody (issue 19, point 3): TERM with both workers busy and ten
connections queued behind them -- every queued connection is served, a connection attempt
during the drain is served or refused (never reset), and once the queue is served attempts
are refused at once.  Before, each draining worker kept its copy of the listener without
accepting from it, and all ten queued connections were reset when the last worker exited."""

from __future__ import annotations

import signal
import socket
import threading
import time

from helpers import LOCAL, server_process

APP = "tests.apps.slow_http:Slow"  # every GET takes 0.5 s and answers its path
QUEUED = 10


def _get(address: tuple[str, int], path: str) -> str:
    """GET ``path`` once: the status line, or what went wrong."""
    try:
        with socket.create_connection(address, timeout=20) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except ConnectionResetError:
        return "reset"
    except ConnectionRefusedError:
        return "refused"
    return data.split(b"\r\n")[0].decode() + " " + data.rpartition(b"\r\n")[2].decode()


def test_term_serves_what_was_queued_and_then_refuses() -> None:
    with server_process("serve", APP, "-b", LOCAL, "-w", "2") as server:
        address = server.tcp_address()
        server.ready_workers(2)
        got: dict[str, str] = {}

        def get(path: str) -> None:
            got[path] = _get(address, path)

        busy = [threading.Thread(target=get, args=(f"/busy{i}",)) for i in range(2)]
        for thread in busy:
            thread.start()
        # Time for the two requests to reach the two workers, and below for the queued ones to
        # be queued: on a slow machine fewer are queued at TERM, never a wrong result.
        time.sleep(0.1)
        queued = [threading.Thread(target=get, args=(f"/q{i}",)) for i in range(QUEUED)]
        for thread in queued:
            thread.start()
        time.sleep(0.1)
        server.signal(signal.SIGTERM)
        during = [_get(address, f"/during{i}") for i in range(3)]
        for thread in busy + queued:
            thread.join(30)
        expected = {f"/busy{i}" for i in range(2)} | {f"/q{i}" for i in range(QUEUED)}
        assert got == {path: f"HTTP/1.1 200 OK {path}" for path in expected}
        assert all(r == "refused" or r.startswith("HTTP/1.1 200 OK /during") for r in during), \
            during
        assert _get(address, "/after") == "refused"
        assert server.wait() == 0
