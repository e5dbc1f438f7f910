"""A WSGI handler's reads in a prefork worker wait only when they must (core/connio.py), and
then under the handler's ``timeout``: a body that stops half way is given up after it, and the
connection's next request (the socket blocking again) is served as before."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

import prefork
from helpers import wait_for
from prefork.apps.wsgi import WSGIRequestHandler
from tests.apps.wsgi_plain import application, digest

BIG = 64 * 1024  # over the multiplexer's BODY_WAIT: the handler reads what has not arrived


class QuickTimeout(WSGIRequestHandler):
    timeout = 0.5


@pytest.fixture
def address() -> Iterator[tuple[str, int]]:
    server: Any = prefork.PreforkWSGIServer(("127.0.0.1", 0), QuickTimeout, app=application,
                                            workers=1)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(psutil.Process().children()) == 1, what="the worker")
        yield server.server_address[:2]
    finally:
        server.shutdown()
        thread.join(30)
        server.server_close()


def response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def post(body_size: int) -> bytes:
    return (f"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {body_size}\r\n\r\n"
            .encode())


def test_a_body_that_stops_is_given_up_after_the_handlers_timeout(
        address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(post(BIG) + b"x" * (BIG // 2))  # half the body, then nothing
        started = time.monotonic()
        assert sock.recv(65536) == b""  # closed by the server (no response: mid-body)
        waited = time.monotonic() - started
    assert 0.3 < waited < 5.0, waited


def test_after_a_read_that_waited_the_next_request_is_served(
        address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(post(BIG) + b"x" * 1000)
        time.sleep(0.05)  # the handler's read finds the rest missing and waits for it
        sock.sendall(b"x" * (BIG - 1000))
        first = response(sock)
        assert first.startswith(b"HTTP/1.1 200") and first.endswith(digest(b"x" * BIG))
        # The socket is blocking again between requests: an idle peek must not wait, and the
        # next request, whose body stops half way, still gets the timeout.
        sock.sendall(b"GET /environ HTTP/1.1\r\nHost: t\r\n\r\n")
        assert response(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(post(BIG) + b"y" * 10)
        started = time.monotonic()
        assert sock.recv(65536) == b""
        assert time.monotonic() - started < 5.0
