"""prefork/apps/closing.py: a new connection whose only request is plain and says close is
served by the listener's closing path with exactly what the handler built for the connection
gives (the same environ, the same response bytes but the Date), and every other first request
is declined without a byte read, so the handler reads it all.  Both paths run in this process
on real TCP connections of one PreforkWSGIServer, through dispatch.request_path as a worker
calls it."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from helpers import in_child
from prefork.apps.server import PreforkWSGIServer
from prefork.apps.wsgi import WSGIRequestHandler
from prefork.core.accepting import PEEKED
from prefork.core.dispatch import request_path
from prefork.core.httplimits import MAX_HEAD

SEEN: list[dict[str, Any]] = []


KEPT: list[Any] = []  # a write() callable an application kept past its request
STALE: list[str] = []  # what calling it later did


def app(environ: dict[str, Any], start_response: Any) -> Any:
    SEEN.append({k: v for k, v in environ.items() if k not in ("wsgi.input", "wsgi.errors")})
    if environ["PATH_INFO"] == "/keep-write":
        KEPT.append(start_response("200 OK", [("Content-Type", "text/plain")]))
        return iter([b"first"])  # (no length: the body's pieces are written as they come)
    if environ["PATH_INFO"] == "/use-kept":
        try:
            KEPT.pop()(b"LATE")
            STALE.append("sent")
        except Exception as exc:
            STALE.append(type(exc).__name__)
    if environ["PATH_INFO"] == "/fail":
        raise RuntimeError("failed on purpose")
    if environ["PATH_INFO"] == "/empty":
        start_response("204 No Content", [])
        return []
    body = repr(sorted((k, v) for k, v in SEEN[-1].items() if k != "REMOTE_PORT")).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Path", environ["PATH_INFO"])])
    return [body]


CLOSING = [
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /a%20b?c=%41 HTTP/1.0\r\nHost: h:80\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
    b"HEAD /h HTTP/1.1\r\nhost: h\r\nX-A: 1\r\nx-a: 2\r\nConnection: a, close\r\n\r\n",
    b"DELETE /p HTTP/1.1\r\nUser-Agent: u\r\nHost: [::1]:8\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 9.9.9.9\r\nConnection: close\r\n\r\n",
    b"GET /fail HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /empty HTTP/1.0\r\nHost: x\r\n\r\n",
]
DECLINED = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # keep-alive
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n",  # more after
    b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\nConnection: close\r\n\r\n",  # refused: 400
    b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",  # no Host: 400
    b"GET http://a/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",  # absolute form
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\nConnection: close\r\n\r\n",
]


@pytest.fixture(params=["127.0.0.1", "0.0.0.0"], ids=["bound", "wildcard"])
def server(request: pytest.FixtureRequest) -> Iterator[PreforkWSGIServer]:
    made = PreforkWSGIServer((request.param, 0), app=app, workers=1)
    made.forwarded_allow_ips = "127.0.0.1"
    try:
        yield made
    finally:
        made.server_close()


class Counting:
    """The server's handler class, counting the handlers built (after the path was made)."""

    def __init__(self) -> None:
        self.built = 0

    def __call__(self, *args: Any) -> WSGIRequestHandler:
        self.built += 1
        return WSGIRequestHandler(*args)


def exchange(server: PreforkWSGIServer, raw: bytes, closing: bool) -> tuple[bytes, int, int]:
    """``raw`` sent on a new connection and served once by request_path (``closing``: the
    path that may use the closing path, as after the accept's look); the response with its
    Date blanked, the handlers built, and the bytes the path left unread."""
    path = request_path(server, looked=closing)
    counting = Counting()
    server.RequestHandlerClass = counting
    port = server.server_address[1]
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock, address = server.socket.accept()
        client.sendall(raw)
        buf = bytearray(MAX_HEAD)
        size = 0
        while size < len(raw):  # (the look: the whole request has arrived)
            size = sock.recv_into(buf, MAX_HEAD, socket.MSG_PEEK)
        PEEKED.sock, PEEKED.buf, PEEKED.size = sock, buf, size
        unread = -1
        sock.settimeout(None)
        if path(sock, address) is not None:  # held: what it left is its handler's
            unread = 0
            sock.close()
        data = b""
        while chunk := client.recv(65536):
            data += chunk
    finally:
        client.close()
        PEEKED.sock = None
    return re.sub(rb"Date: [^\r]*", b"Date: -", data), counting.built, unread


@pytest.mark.parametrize("raw", CLOSING)
def test_a_closing_plain_request_is_served_as_the_handler_serves_it(
        server: PreforkWSGIServer, raw: bytes) -> None:
    SEEN.clear()
    fast, built_fast, _ = exchange(server, raw, closing=True)
    general, built_general, _ = exchange(server, raw, closing=False)
    assert (built_fast, built_general) == (0, 1)  # (the closing path served the first)
    assert fast == general
    assert fast.startswith(b"HTTP/1.1 ") and b"Connection: close" in fast
    if b"/fail" not in raw:
        assert len(SEEN) == 2
        one, two = SEEN
        assert one.pop("REMOTE_PORT") != two.pop("REMOTE_PORT")
        assert one == two
        assert one["REMOTE_ADDR"] == "127.0.0.1" if b"Forwarded" not in raw else "9.9.9.9"
        assert one["SERVER_NAME"] == "127.0.0.1"


@pytest.mark.parametrize("raw", DECLINED)
def test_any_other_first_request_is_left_to_the_handler(
        server: PreforkWSGIServer, raw: bytes) -> None:
    fast, built_fast, _ = exchange(server, raw, closing=True)
    general, built_general, _ = exchange(server, raw, closing=False)
    assert (built_fast, built_general) == (1, 1)
    assert fast == general


def test_a_changed_handler_class_gets_no_closing_path(server: PreforkWSGIServer) -> None:
    class Logged(WSGIRequestHandler):
        def handle(self) -> None:
            super().handle()

    class Tuned(WSGIRequestHandler):
        timeout = 3.0

    assert Logged.closing_path(server) is None
    assert Tuned.closing_path(server) is not None
    assert WSGIRequestHandler.closing_path(server) is not None


def test_a_write_kept_by_the_application_never_reaches_a_later_connection(
        server: PreforkWSGIServer) -> None:
    """Found by a review: one writer shared by the listener's responses let a write() kept
    from an earlier request send its bytes into the next client's response."""
    KEPT.clear()
    STALE.clear()
    first, built, _ = exchange(server, b"GET /keep-write HTTP/1.1\r\nHost: x\r\n"
                               b"Connection: close\r\n\r\n", closing=True)
    assert built == 0 and first.endswith(b"5\r\nfirst\r\n0\r\n\r\n"), first
    for closing in (True, False):  # (the next connection by either path)
        KEPT.append(KEPT[-1] if KEPT else None)
        later, _, _ = exchange(server, b"GET /use-kept HTTP/1.1\r\nHost: x\r\n"
                               b"Connection: close\r\n\r\n", closing=closing)
        assert later.startswith(b"HTTP/1.1 200 OK\r\n") and b"LATE" not in later, later
    assert STALE == ["ClientGone", "ClientGone"]


def test_a_client_gone_is_an_error_even_where_sigpipe_kills() -> None:
    """Found by a review: the closing path's writer sent without MSG_NOSIGNAL, so a worker
    whose application restored SIGPIPE's default died of a reset client."""
    def write_to_a_reset_client() -> str:
        import signal
        import struct

        from prefork.apps.closing import Writer
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        ours, theirs = socket.socketpair()
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        theirs.close()
        writer = Writer(ours, 1.0)
        for _ in range(3):
            try:
                writer.write(b"x" * 1000)
            except OSError as exc:
                return type(exc).__name__
        return "no error"

    assert in_child(write_to_a_reset_client) == "BrokenPipeError"
