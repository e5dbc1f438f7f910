"""Responses leave through the multiplexer (issue 19, point 1): a client that reads its
response slowly holds no handler.  Before, 50 slow readers of 2 MB (or streamed) WSGI
responses, or of an 8 MB ``http.server`` response written through ``wfile``, held a default
2-worker pool's handlers in ``sendall`` (for the WSGI handler's 30 s write timeout; for the
``http.server`` handler for as long as the readers lasted) and fresh clients went unanswered.

Each slow reader has a 4 KiB receive buffer and reads 1 KiB a second; once the fresh clients
are measured, every reader reads the rest of its response at full speed and checks it whole.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from helpers import LOCAL, server_process, wait_for
from tests.apps.big import HANDLER_SIZE, WSGI_SIZE

READERS = 50
FRESH = 20
FRESH_WITHIN = 1.0  # seconds
KEEP_ALIVE = ("--keep-alive", "120")


Wrap = Callable[[socket.socket], socket.socket]


def _slow_reader(address: tuple[str, int], request: bytes,
                 wrap: Wrap = lambda sock: sock) -> socket.socket:
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    raw.settimeout(30)
    raw.connect(address)
    sock = wrap(raw)
    sock.sendall(request)
    sock.setblocking(False)  # read by _reading_slowly, without waiting
    return sock


@contextlib.contextmanager
def _reading_slowly(socks: list[socket.socket], got: list[bytearray]) -> Iterator[None]:
    """A thread reads 1 KiB a second from each of ``socks`` (into ``got``) until the end."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(1.0):
            for sock, into in zip(socks, got, strict=True):
                with contextlib.suppress(BlockingIOError, ssl.SSLWantReadError):
                    into += sock.recv(1024)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _rest(sock: socket.socket, got: bytearray) -> bytes:
    """The whole response on ``sock`` (``got`` of it read already), read at full speed; its
    body, checked against its Content-Length or its chunked framing."""
    sock.settimeout(30)
    data = bytearray(got)
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, bytes(data[:200])
        data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    rest = bytearray(body)
    if b"transfer-encoding: chunked" in head.lower():
        while not rest.endswith(b"\r\n0\r\n\r\n"):
            chunk = sock.recv(1 << 20)
            assert chunk, len(rest)
            rest += chunk
        return _unchunk(bytes(rest))
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(rest) < length:
        chunk = sock.recv(1 << 20)
        assert chunk, (len(rest), length)
        rest += chunk
    return bytes(rest)


def _unchunk(data: bytes) -> bytes:
    out, at = bytearray(), 0
    while True:
        end = data.index(b"\r\n", at)
        size = int(data[at:end], 16)
        if not size:
            return bytes(out)
        out += data[end + 2:end + 2 + size]
        at = end + 2 + size + 2


def _ask_pid(address: tuple[str, int], wrap: Wrap, timeout: float) -> None:
    with wrap(socket.create_connection(address, timeout=timeout)) as sock:
        sock.sendall(b"GET /pid HTTP/1.0\r\nHost: t\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1."), data
        assert data.split(b" ", 2)[1] == b"200", data


def _fresh_clients(address: tuple[str, int], wrap: Wrap) -> list[float]:
    """How long each of FRESH clients in a row waited for its answer (10 s: unanswered)."""
    waits = []
    for _ in range(FRESH):
        start = time.monotonic()
        try:
            _ask_pid(address, wrap, 10)
            waits.append(time.monotonic() - start)
        except OSError:
            waits.append(10.0)
    return waits


def _attack(address: tuple[str, int], requests: list[bytes], size: int,
            wrap: Wrap = lambda sock: sock) -> None:
    socks = [_slow_reader(address, request, wrap) for request in requests]
    got = [bytearray() for _ in socks]
    try:
        with _reading_slowly(socks, got):
            # Every reader's response has begun: each was served, none waits for a worker.
            wait_for(lambda: all(got), timeout=20, what="every slow reader's response begun")
            waits = _fresh_clients(address, wrap)
        late = [round(w, 2) for w in waits if w >= FRESH_WITHIN]
        assert not late, f"{len(late)} of {FRESH} fresh clients waited: {late}"
        for sock, into in zip(socks, got, strict=True):
            assert _rest(sock, into) == b"x" * size
            # Kept alive (the servers here wait KEEP_ALIVE s for it: the kernel's buffers may
            # have taken the end of a response long ago): the next request is served.
            sock.sendall(_get("/pid"))
            assert _rest(sock, bytearray()).split()[0].isdigit()
    finally:
        for sock in socks:
            sock.close()


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("threads", ["1", "4"])
def test_slow_readers_of_large_and_streamed_wsgi_responses_hold_no_handler(
        threads: str) -> None:
    with server_process("serve", "tests.apps.big:application", "-b", LOCAL, "-w", "2",
                        "--threads", threads, *KEEP_ALIVE) as server:
        address = server.tcp_address()
        server.ready_workers(2)
        requests = [_get("/big" if n % 2 else "/stream") for n in range(READERS)]
        _attack(address, requests, WSGI_SIZE)


@pytest.mark.timeout(120)
def test_slow_readers_of_an_8_mb_wsgi_file_wrapper_hold_no_handler() -> None:
    with server_process("serve", "tests.apps.big:application", "-b", LOCAL, "-w", "2",
                        *KEEP_ALIVE) as server:
        address = server.tcp_address()
        server.ready_workers(2)
        _attack(address, [_get("/file")] * READERS, HANDLER_SIZE)


@pytest.mark.timeout(120)
def test_slow_readers_of_an_http_server_handler_writing_8_mb_hold_no_handler() -> None:
    with server_process("serve", "tests.apps.big:Big", "-b", LOCAL, "-w", "2",
                        *KEEP_ALIVE) as server:
        address = server.tcp_address()
        server.ready_workers(2)
        _attack(address, [_get("/big")] * READERS, HANDLER_SIZE)


@pytest.mark.timeout(120)
@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_slow_tls_readers_hold_no_handler(pki: Path) -> None:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))

    def wrap(sock: socket.socket) -> socket.socket:
        return context.wrap_socket(sock, server_hostname="127.0.0.1")

    with server_process("serve", "tests.apps.big:application", "-b", LOCAL, "-w", "2",
                        *KEEP_ALIVE, "--certfile", str(pki / "server.pem"),
                        "--keyfile", str(pki / "server.key")) as server:
        address = server.tcp_address()
        server.ready_workers(2)
        requests = [_get("/big" if n % 2 else "/stream") for n in range(10)]
        _attack(address, requests, WSGI_SIZE, wrap)


def test_a_reader_too_slow_for_send_timeout_is_disconnected() -> None:
    # 8 MB: more than the kernel's socket buffers take (tcp_wmem's 4 MB at most).
    with server_process("serve", "tests.apps.big:Big", "-b", LOCAL, "-w", "1",
                        "--send-timeout", "1") as server:
        address = server.tcp_address()
        worker = psutil.Process(server.ready_workers(1).pop())
        sock = _slow_reader(address, _get("/big"))
        port = sock.getsockname()[1]
        try:
            _ask_pid(address, lambda s: s, 5)  # the worker is free meanwhile
            start = time.monotonic()

            def held() -> bool:
                return any(c.raddr and c.raddr[1] == port and c.status == "ESTABLISHED"
                           for c in worker.net_connections())

            wait_for(lambda: not held(), timeout=10, what="the reader disconnected")
            assert time.monotonic() - start < 5
            sock.settimeout(10)
            data = bytearray()
            while chunk := sock.recv(65536):
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 ")
            assert len(data) < HANDLER_SIZE  # the rest was dropped after send_timeout
        finally:
            sock.close()
