"""Keep-alive under the pool keeps the handler's semantics, as under ThreadingMixIn: the
handler's ``timeout`` bounds the wait for the next request on a kept-alive connection, and an
exception from ``finish()`` reaches ``handle_error`` once for every connection."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from harness import MODES, served

from helpers import wait_for


def _get(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(4096)
    return body


@pytest.mark.parametrize("mode", MODES)
def test_handler_timeout_closes_an_idle_kept_alive_connection(mode: str, tmp_path: Path) -> None:
    # Timed.timeout is 0.5 s; the pool's keep_alive is 60 s: waiting up to 20 s tells them apart.
    with served(mode, "timeout", tmp_path) as port, socket.create_connection(
            ("127.0.0.1", port), timeout=20) as sock:
        assert _get(sock, "/one") == b"ok"
        assert _get(sock, "/two") == b"ok"  # kept alive: the second request is served
        assert sock.recv(1) == b""  # then closed by the server, well before 20 s


@pytest.mark.parametrize("mode", MODES)
def test_finish_errors_reach_handle_error_for_every_connection(mode: str,
                                                               tmp_path: Path) -> None:
    with served(mode, "finish-error", tmp_path) as port:
        for n in range(3):  # three kept-alive connections, each closed by the client
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                assert _get(sock, f"/{n}").isdigit()

        def errors() -> int:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                return int(_get(sock, "/errors"))

        wait_for(lambda: errors() >= 3, timeout=10, interval=0.05, what="3 handle_error calls")
        assert errors() == 3
