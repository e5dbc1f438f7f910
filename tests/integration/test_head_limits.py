"""The head limits a user sets (--limit-request-line, --limit-request-fields,
--limit-request-field-size) on real servers: honoured in every --mode by the WSGI handler and by
http.server handlers, and by the multiplexer's look at a head that has not ended, which answers a
head already refused at once (with the parser's status), not with a 408 after client_timeout;
a half-closed client with a partial head is closed at once."""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import LOCAL, ROOT, server_process, wait_for

WSGI = "tests.apps.wsgi_plain:application"
HTTP_SERVER = "tests.apps.peer_http:Peer"
LIMITS = ("--limit-request-line", "100", "--limit-request-fields", "3",
          "--limit-request-field-size", "60")
WITHIN = 1.0  # seconds an answer may take; the client timeout is 5 s
PIPELINED = b"GET /hello HTTP/1.1\r\nHost: h\r\n\r\n"


@contextlib.contextmanager
def serving(app: str, *extra: str, mode: str = "prefork") -> Iterator[tuple[str, int]]:
    with server_process("serve", app, "-b", LOCAL, "-w", "1", "--mode", mode,
                        "--client-timeout", "5", *LIMITS, *extra) as server:
        address = server.tcp_address()
        if mode == "prefork":
            server.wait_workers(1)
        yield address


def connect(address: tuple[str, int], tls: bool = False) -> socket.socket:
    sock = socket.create_connection(address, timeout=10)
    if not tls:
        return sock
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(sock)


def exchange(address: tuple[str, int], raw: bytes, tls: bool = False,
             half_close: bool = False) -> tuple[float, bytes]:
    """Send ``raw``, read until the server closes: (seconds it took, what came back)."""
    with connect(address, tls) as sock:
        started = time.monotonic()
        sock.sendall(raw)
        if half_close:
            socket.socket.shutdown(sock, socket.SHUT_WR)  # (TLS: keeps the TLS layer)
        data = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                data += chunk
        return time.monotonic() - started, data


def statuses(data: bytes) -> list[int]:
    return [int(part.split(b" ", 1)[0]) for part in data.split(b"HTTP/1.")[1:]
            if part[:1] in (b"0", b"1") and part[2:5].isdigit()
            for part in [part[2:]]]


def line(length: int) -> bytes:
    """A request line of ``length`` bytes."""
    return b"GET /hello?" + b"a" * (length - len(b"GET /hello? HTTP/1.1")) + b" HTTP/1.1"


def request(first: bytes = line(20), fields: int = 2, size: int = 7) -> bytes:
    """A head of ``fields`` fields (Host, Connection: close, X-n of ``size`` bytes)."""
    lines = [first, b"Host: h", b"Connection: close"]
    lines += [b"X-%d: " % i + b"v" * (size - 5) for i in range(fields - 2)]
    return b"\r\n".join(lines) + b"\r\n\r\n"


CASES = [  # (the request, the status it gets)
    (request(line(100)), 200),
    (request(line(101)), 414),
    (request(fields=3), 200),
    (request(fields=4), 431),
    (request(fields=3, size=60), 200),
    (request(fields=3, size=61), 431),
]


def check_cases(address: tuple[str, int]) -> None:
    for raw, expected in CASES:
        _, data = exchange(address, raw + (PIPELINED if expected != 200 else b""))
        assert statuses(data) == [expected], (raw[:40], data[:200])


@pytest.mark.parametrize("mode", ["prefork", "fork", "thread", "sync"])
def test_the_wsgi_handler_honours_the_limits_in_every_mode(mode: str) -> None:
    with serving(WSGI, mode=mode) as address:
        check_cases(address)


@pytest.mark.parametrize("mode", ["prefork", "thread"])
def test_http_server_handlers_honour_the_limits(mode: str) -> None:
    with serving(HTTP_SERVER, mode=mode) as address:
        check_cases(address)


PARSERS = ["python"]
if importlib.util.find_spec("httptools") is not None:
    PARSERS.append("httptools")


@pytest.fixture(scope="module", params=[(p, t) for p in PARSERS for t in (False, True)],
                ids=lambda p: f"{p[0]}-{'tls' if p[1] else 'plain'}")
def pool(request: pytest.FixtureRequest, pki: Path) -> Iterator[tuple[tuple[str, int], bool]]:
    parser, tls = request.param
    extra = ("--certfile", str(pki / "server.pem"), "--keyfile", str(pki / "server.key"))
    with serving(WSGI, "--http-parser", parser, *(extra if tls else ())) as address:
        yield address, tls


PARTIAL = [  # (a head that never ends, the status it gets at once)
    (b"GET /" + b"a" * 200, 414),  # the request line, not ended, already over 100
    (request(fields=5)[:-2], 431),  # five fields and no end
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"v" * 100, 431),  # a field line over 60
    (b"GET / HTTP/1.1\r\nHo st: h\r\n", 400),  # a malformed field line
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n", 400),  # NUL in a value
    (b"GET / HTTP/2.0\r\nHost: h\r\n", 505),
    (b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n", 400),  # obs-fold
]


@pytest.mark.parametrize("raw,expected", PARTIAL, ids=range(len(PARTIAL)))
def test_a_partial_head_already_refused_is_answered_at_once(
        pool: tuple[tuple[str, int], bool], raw: bytes, expected: int) -> None:
    address, tls = pool
    took, data = exchange(address, raw, tls)
    assert statuses(data) == [expected], data[:200]
    assert took < WITHIN, took  # not a 408 after the 5 s client_timeout


def test_a_half_closed_partial_head_is_closed_at_once(
        pool: tuple[tuple[str, int], bool]) -> None:
    address, tls = pool
    took, data = exchange(address, b"GET / HTTP/1.1\r\nHost: h\r\n", tls, half_close=True)
    assert data == b"", data
    assert took < WITHIN, took
    # and a partial head that is still valid keeps waiting (then 408), whoever else is served
    with connect(address, tls) as waiting:
        waiting.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n")
        waiting.settimeout(0.5)
        with pytest.raises(TimeoutError):
            waiting.recv(100)
        assert statuses(exchange(address, request(), tls)[1]) == [200]


def test_an_http_server_handlers_over_long_request_line_is_refused_at_once() -> None:
    with serving(HTTP_SERVER) as address:
        took, data = exchange(address, b"GET /" + b"a" * 200)
    assert statuses(data) == [414], data
    assert took < WITHIN, took


def test_a_reload_applies_new_limits(tmp_path: Path) -> None:
    (tmp_path / "prefork.toml").write_text("limit_request_line = 100\n")
    env = {"PYTHONPATH": str(ROOT)}
    with server_process("serve", WSGI, "-c", "prefork.toml", "-b", LOCAL, "-w", "1",
                        cwd=tmp_path, env=env) as server:
        address = server.tcp_address()
        old = server.ready_workers(1)
        assert statuses(exchange(address, request(line(150)))[1]) == [414]
        (tmp_path / "prefork.toml").write_text("limit_request_line = 200\n")
        server.reload(2)
        wait_for(lambda: not (server.live() & old), what="the old generation gone")
        assert statuses(exchange(address, request(line(150)))[1]) == [200]


def test_a_dripped_head_is_judged_line_by_line(pool: tuple[tuple[str, int], bool]) -> None:
    """A head sent in pieces is refused as soon as its bad line is in, and a kept-alive
    connection's next head is judged afresh (not taken for the last head it saw)."""
    address, tls = pool
    with connect(address, tls) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n")  # two lines: judged, fine
        with pytest.raises(TimeoutError):
            sock.settimeout(0.3)
            sock.recv(100)
        sock.settimeout(10)
        sock.sendall(b"\r\n")
        assert statuses(sock.recv(65536)) == [404]  # served, kept alive
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHo st: h\r\n")  # two lines again, the second bad
        data = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                data += chunk
        assert statuses(data) == [400], data
        assert time.monotonic() - started < WITHIN


@pytest.mark.parametrize("mode", ["prefork", "thread"])
def test_unset_limits_are_each_handlers_own(mode: str) -> None:
    """Unset, an http.server handler keeps the stdlib's bounds (a 9000-byte request line is
    served, as under ThreadingMixIn), the WSGI handler its 8190 (414)."""
    long = request(line(9000))
    for app, expected in ((HTTP_SERVER, 200), (WSGI, 414)):
        with server_process("serve", app, "-b", LOCAL, "-w", "1", "--mode", mode) as server:
            address = server.tcp_address()
            if mode == "prefork":
                server.wait_workers(1)
            assert statuses(exchange(address, long)[1]) == [expected], app
