"""prefork.ops.endpoint: no client holds up the loop; handlers are plain socketserver classes."""

from __future__ import annotations

import http.server
import logging
import select
import selectors
import socket
import socketserver
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_control import TIMEOUT, Loop, loop_turn

from prefork.ops.endpoint import BufferedRequest, Endpoint


class Upper(socketserver.StreamRequestHandler):
    """Replies the first line in upper case; ``BOOM`` raises; ``BIG`` writes 8 MiB."""

    def handle(self) -> None:
        line = self.rfile.readline()
        if line.startswith(b"BOOM"):
            raise RuntimeError("boom")
        if line.startswith(b"BIG"):
            self.wfile.write(b"x" * (8 << 20))
            return
        self.wfile.write(line.upper())


class UpperEndpoint(Endpoint):
    handler_class = Upper
    name = "upper"
    max_request = 1024
    max_connections = 8

    def __init__(self, path: str) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(64)
        super().__init__(sock)

    def timeout_reply(self) -> bytes:
        return b"TIMEOUT\n"

    def too_large_reply(self) -> bytes:
        return b"TOO LARGE\n"

    def failure_reply(self, exc: Exception) -> bytes:
        return f"FAILED {type(exc).__name__}\n".encode()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, UpperEndpoint, Loop]]:
    path = str(tmp_path / "upper")
    endpoint = UpperEndpoint(path)
    loop = Loop(endpoint)
    try:
        yield path, endpoint, loop
    finally:
        loop.stop()


def connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)  # blocking: a full unix backlog waits, not EAGAIN
    sock.settimeout(TIMEOUT)
    return sock


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def ask(path: str, payload: bytes) -> bytes:
    with connect(path) as sock:
        sock.sendall(payload)
        return read_all(sock)


# --- the handler stand-in ----------------------------------------------------------------------


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Buffered(socketserver.StreamRequestHandler):
    wbufsize = 4096  # makefile("wb", ...) instead of socketserver's unbuffered writer

    def handle(self) -> None:
        self.wfile.write(self.rfile.read())


@pytest.mark.parametrize(
    ("handler", "request_bytes", "expected"),
    [
        (Upper, b"abc\nrest", b"ABC\n"),
        (Buffered, b"all of it", b"all of it"),
        (Hello, b"GET /x HTTP/1.0\r\nHost: h\r\n\r\n", b"hello /x"),
    ],
)
def test_handler_classes_run_over_buffers(
    handler: type[socketserver.BaseRequestHandler], request_bytes: bytes, expected: bytes
) -> None:
    left, right = socket.socketpair()
    with left, right:
        request = BufferedRequest(request_bytes, left)
        handler(request, ("127.0.0.1", 1), None)  # type: ignore[arg-type]
        assert bytes(request.reply).endswith(expected)
        assert request.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM


def test_the_same_handler_works_on_a_real_socket() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.sendall(b"over a socket\n")
        Upper(left, "", None)  # type: ignore[arg-type]
        assert right.recv(100) == b"OVER A SOCKET\n"


# --- serving -----------------------------------------------------------------------------------


def test_request_and_reply(served: tuple[str, UpperEndpoint, Loop]) -> None:
    path, _, _ = served
    assert ask(path, b"hello\n") == b"HELLO\n"
    with connect(path) as sock:
        sock.sendall(b"no newline, then EOF")
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == b"NO NEWLINE, THEN EOF"  # EOF completes a request
    assert ask(path, b"x" * 2000 + b"\n") == b"TOO LARGE\n"


def test_handler_failure_is_replied_and_logged_once(
    served: tuple[str, UpperEndpoint, Loop], caplog: pytest.LogCaptureFixture
) -> None:
    path, _, _ = served
    with caplog.at_level(logging.ERROR, logger="prefork.master"):
        assert ask(path, b"BOOM\n") == b"FAILED RuntimeError\n"
        assert ask(path, b"fine\n") == b"FINE\n"
    assert len([r for r in caplog.records if r.exc_info]) == 1


def test_idle_clients_do_not_delay_others(served: tuple[str, UpperEndpoint, Loop]) -> None:
    path, _, _ = served
    idle = [connect(path) for _ in range(UpperEndpoint.max_connections - 1)]
    try:
        start = time.monotonic()
        assert ask(path, b"quick\n") == b"QUICK\n"
        assert time.monotonic() - start < 0.3
        # The idle ones are answered at their deadline, all at about the same time.
        for sock in idle:
            assert read_all(sock) == b"TIMEOUT\n"
        assert time.monotonic() - start < UpperEndpoint.timeout + 0.5
    finally:
        for sock in idle:
            sock.close()


def test_trickling_client_gets_no_fresh_deadline_per_byte(
    served: tuple[str, UpperEndpoint, Loop],
) -> None:
    path, endpoint, _ = served
    with connect(path) as sock:
        start = time.monotonic()
        sent = 0
        # A byte every 50 ms, well inside any per-recv timeout, until the server answers.
        while not select.select([sock], [], [], 0.05)[0]:
            sock.sendall(b"a")
            sent += 1
            assert time.monotonic() - start < endpoint.timeout + 2
        elapsed = time.monotonic() - start
        assert sent > 5
        assert endpoint.timeout * 0.9 <= elapsed < endpoint.timeout + 0.5
        assert read_all(sock) == b"TIMEOUT\n"


def test_over_the_limit_is_closed_at_once(served: tuple[str, UpperEndpoint, Loop]) -> None:
    path, _, _ = served
    held = [connect(path) for _ in range(UpperEndpoint.max_connections)]
    try:
        with connect(path) as extra:
            start = time.monotonic()
            assert read_all(extra) == b""
            assert time.monotonic() - start < 0.5
    finally:
        for sock in held:
            sock.close()


def test_reader_that_does_not_read_cannot_block_the_loop(tmp_path: Path) -> None:
    """An 8 MiB reply to a client that never reads: written as far as the socket takes it,
    each turn comes back at once, and the connection goes at its deadline."""
    path = str(tmp_path / "upper")
    with UpperEndpoint(path) as endpoint, selectors.DefaultSelector() as sel, connect(path) as sock:
        endpoint.register(sel)
        sock.sendall(b"BIG\n")
        start = time.monotonic()
        longest = 0.0
        while endpoint.connections or time.monotonic() - start < 0.1:
            turn = time.monotonic()
            loop_turn(sel, endpoint, limit=0.05)
            longest = max(longest, time.monotonic() - turn - 0.05)
            assert time.monotonic() - start < endpoint.timeout + 1
        assert endpoint.timeout * 0.9 <= time.monotonic() - start
        assert longest < 0.1
        received = len(read_all(sock))
        assert 0 < received < 8 << 20
        endpoint.close()
        assert not sel.get_map()


def test_deadline_and_close(tmp_path: Path) -> None:
    path = str(tmp_path / "upper")
    with selectors.DefaultSelector() as sel:
        endpoint = UpperEndpoint(path)
        endpoint.register(sel)
        assert endpoint.deadline() is None
        socks = [connect(path) for _ in range(3)]
        try:
            before = time.monotonic()
            while len(endpoint.connections) < 3:
                loop_turn(sel, endpoint, limit=0.05)
                assert time.monotonic() - before < TIMEOUT
            deadline = endpoint.deadline()
            assert deadline is not None
            assert before < deadline <= time.monotonic() + endpoint.timeout
            fds = [c.sock for c in endpoint.connections.values()]
            endpoint.close()
            endpoint.close()  # idempotent
            assert not sel.get_map()
            assert all(s.fileno() == -1 for s in fds)
            assert endpoint.sock.fileno() == -1
            assert endpoint.deadline() is None
            for sock in socks:
                assert read_all(sock) == b""
        finally:
            for sock in socks:
                sock.close()
