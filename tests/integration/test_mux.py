"""The worker's multiplexer seen from outside (issue 10 points 1 and 3): idle, slow and busy
keep-alive clients on a default 2-worker pool leave every other client answered within 1 s;
keep-alive, pipelining and the head limits hold on the wire."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from helpers import http_get, server_process, wait_for

FRESH = 10  # fresh requests that must each be answered within ...
WITHIN = 1.0  # ... this many seconds
HELLO = b"Hello, world!\n"
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


# The same hello as a stdlib BaseHTTPRequestHandler and as a WSGI application.
HELLOS = ["workers.http_hello:Hello", "workers.wsgi_hello:app"]


@contextlib.contextmanager
def hello(*extra: str, app: str = HELLOS[0]) -> Iterator[tuple[str, int]]:
    with server_process("serve", app, "-b", "127.0.0.1:0", "-w", "2", *extra) as server:
        address = server.tcp_address()
        server.wait_workers(2)
        yield address


def fresh_http(address: tuple[str, int]) -> None:
    """FRESH new clients in a row, each answered within WITHIN seconds."""
    for _ in range(FRESH):
        started = time.monotonic()
        status, body = http_get(*address, timeout=WITHIN)
        assert (status, body) == (200, HELLO)
        assert time.monotonic() - started < WITHIN


def fresh_echo(address: tuple[str, int]) -> None:
    for _ in range(FRESH):
        with socket.create_connection(address, timeout=WITHIN) as sock:
            sock.sendall(b"ping\n")
            assert sock.makefile("rb").readline() == b"ping\n"


def connections(address: tuple[str, int], count: int) -> list[socket.socket]:
    return [socket.create_connection(address, timeout=10) for _ in range(count)]


def read_response(reader: object) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length from a binary file object."""
    status_line = reader.readline()  # type: ignore[attr-defined]
    assert status_line, "connection closed"
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):  # type: ignore[attr-defined]
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return int(status_line.split()[1]), reader.read(length)  # type: ignore[attr-defined]


class Background:
    """Runs ``step`` in a few threads until stopped; counts the steps that completed."""

    def __init__(self, step: Callable[[int], None], threads: int) -> None:
        self.stop = threading.Event()
        self.done = 0
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(step, i), daemon=True)
                        for i in range(threads)]

    def _run(self, step: Callable[[int], None], index: int) -> None:
        try:
            while not self.stop.is_set():
                step(index)
                self.done += 1
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    def __enter__(self) -> Background:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(5)

    def stuck(self) -> int:
        """Threads still running after the stop: a request the server never answered."""
        return sum(thread.is_alive() for thread in self.threads)


@pytest.mark.parametrize("app", HELLOS)
def test_idle_connections_do_not_stop_http(app: str) -> None:
    with hello(app=app) as address:
        idle = connections(address, 8)
        try:
            fresh_http(address)
        finally:
            for sock in idle:
                sock.close()


def test_idle_connections_do_not_stop_a_stream_handler() -> None:
    with server_process("serve", "workers.echo:LineEcho", "-b", "127.0.0.1:0", "-w",
                        "2") as server:
        address = server.tcp_address()
        server.wait_workers(2)
        idle = connections(address, 8)
        try:
            fresh_echo(address)
        finally:
            for sock in idle:
                sock.close()


@pytest.mark.parametrize("app", HELLOS)
def test_slowloris_does_not_stop_http(app: str) -> None:
    with hello(app=app) as address:
        slow = connections(address, 16)
        head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 64
        sent = [0]

        def drip(index: int) -> None:
            if index == 0:
                for sock in slow:
                    sock.send(head[sent[0] % len(head):][:1])
                sent[0] += 1
            time.sleep(0.5)  # the attack's own pace, not a wait for the server

        try:
            with Background(drip, 1) as attack:
                wait_for(lambda: sent[0] >= 2, what="the drip under way")
                fresh_http(address)
                assert not attack.errors, attack.errors
        finally:
            for sock in slow:
                sock.close()


@pytest.mark.parametrize("app", HELLOS)
def test_busy_keep_alive_clients_do_not_stop_http(app: str) -> None:
    with hello(app=app) as address:
        clients = connections(address, 32)
        readers = [sock.makefile("rb") for sock in clients]

        def request(index: int) -> None:
            clients[index].sendall(GET)
            assert read_response(readers[index]) == (200, HELLO)

        try:
            with Background(request, 32) as load:
                wait_for(lambda: load.done >= 64, what="keep-alive load under way")
                fresh_http(address)
                assert not load.errors, load.errors
            assert load.stuck() == 0
        finally:
            for sock in clients:
                sock.close()


def test_keep_alive_and_pipelining_on_the_wire() -> None:
    with hello("--keep-alive", "0.5") as address, socket.create_connection(address, 5) as sock:
        reader = sock.makefile("rb")
        for _ in range(3):  # one after the other on one connection
            sock.sendall(GET)
            assert read_response(reader) == (200, HELLO)
        sock.sendall(GET * 3)  # pipelined: all three in one segment
        for _ in range(3):
            assert read_response(reader) == (200, HELLO)
        # Idle past --keep-alive: the server closes it.
        started = time.monotonic()
        assert reader.read() == b""
        assert time.monotonic() - started < 3


def test_a_head_that_does_not_complete_gets_408_and_an_oversized_one_431() -> None:
    with hello("--client-timeout", "0.5") as address:
        with socket.create_connection(address, timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            assert sock.makefile("rb").readline().split()[1] == b"408"
        with socket.create_connection(address, timeout=5) as sock:
            with contextlib.suppress(OSError):  # the server may close while we still send
                sock.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"b" * (70 * 1024))
            assert sock.makefile("rb").readline().split()[1] == b"431"
        assert http_get(*address) == (200, HELLO)


@pytest.mark.parametrize("app", ["workers.http_hello:Hello", "workers.echo:LineEcho"])
def test_graceful_stop_closes_idle_connections(app: str) -> None:
    with server_process("serve", app, "-b", "127.0.0.1:0", "-w", "1") as server:
        address = server.tcp_address()
        server.wait_workers(1)
        idle = connections(address, 4)
        try:
            # Accepted by the worker (not only queued in the kernel) once a request got through.
            if app.endswith("Hello"):
                assert http_get(*address) == (200, HELLO)
            started = time.monotonic()
            server.stop_ok()
            assert time.monotonic() - started < 5
        finally:
            for sock in idle:
                sock.close()


ECHO_APP = "tests.apps.wsgi_plain:application"  # POST /echo answers "<length> <sha256>"


def test_slow_bodies_do_not_stop_wsgi() -> None:
    """16 clients send a POST head with a small Content-Length body, then drip the body (a slow
    POST): the body is waited for in the multiplexer too, so no handler is held."""
    with hello(app=ECHO_APP) as address:
        slow = connections(address, 16)
        for sock in slow:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        sent = [0]

        def drip(index: int) -> None:
            for sock in slow:
                sock.send(b"x")
            sent[0] += 1
            time.sleep(0.5)  # the attack's own pace

        try:
            with Background(drip, 1) as attack:
                wait_for(lambda: sent[0] >= 2, what="the drip under way")
                for _ in range(FRESH):
                    started = time.monotonic()
                    status, _ = http_get(*address, path="/hello", timeout=WITHIN)
                    assert status == 200
                    assert time.monotonic() - started < WITHIN
                assert not attack.errors, attack.errors
        finally:
            for sock in slow:
                sock.close()


def echo_post(sock: socket.socket, reader: object, body: bytes, expect: bool = False) -> bytes:
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % len(body)
    if expect:
        sock.sendall(head + b"Expect: 100-continue\r\n\r\n")
        started = time.monotonic()
        assert reader.readline().split()[1] == b"100"  # type: ignore[attr-defined]
        assert reader.readline() == b"\r\n"  # type: ignore[attr-defined]
        assert time.monotonic() - started < WITHIN  # not held back waiting for the body
        sock.sendall(body)
    else:
        sock.sendall(head + b"\r\n" + body)
    status, answer = read_response(reader)
    assert status == 200
    return answer


@pytest.mark.parametrize("size", [0, 1000, 16 * 1024, 16 * 1024 + 1, 200 * 1024])
def test_request_bodies_of_every_size_on_the_wire(size: int) -> None:
    """Bodies waited for in the multiplexer (up to 16 KiB) and not (larger), whole, split, and
    behind ``Expect: 100-continue`` (which is answered at once, not after the body)."""
    body = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    expected = b"%d %s" % (size, hashlib.sha256(body).hexdigest().encode())
    with hello(app=ECHO_APP) as address, socket.create_connection(address, 5) as sock:
        reader = sock.makefile("rb")
        assert echo_post(sock, reader, body) == expected
        if size:  # (no body: no 100 Continue, the answer comes at once)
            assert echo_post(sock, reader, body, expect=True) == expected
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        sock.sendall(body[: size // 2])  # the rest a moment later, as a slow link sends it
        time.sleep(0.2)  # the client's own pace
        sock.sendall(body[size // 2:])
        assert read_response(reader) == (200, expected)
