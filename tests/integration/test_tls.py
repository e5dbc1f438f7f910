"""TLS from the command (issue 10 point 5): HTTPS works, stalled handshakes delay no one, client
certificates are required with --ca-certs; after the handshake, clients dripping a request head
delay no one either (the head is read, decrypted, in the multiplexer), and keep-alive and
pipelining still work; and the unix-socket peer-credentials mix-in."""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import prefork
from helpers import ServerProcess, server_process, wait_for
from prefork.core.accepting import Check, read_head
from prefork.core.httplimits import MAX_HEAD
from prefork.core.tls import ReadAheadSSLSocket, read_ahead_context, server_context

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")

HELLO = b"Hello, world!\n"
GET = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def client_context(pki: Path, with_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if with_cert:
        context.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    return context


def https_get(address: tuple[str, int], context: ssl.SSLContext, timeout: float = 5.0,
              requests: int = 1) -> list[bytes]:
    """``requests`` GETs on one TLS connection; the body of each (Hello's is fixed-size)."""
    bodies = []
    with socket.create_connection(address, timeout=timeout) as raw, \
            context.wrap_socket(raw, server_hostname=address[0]) as sock:
        reader = sock.makefile("rb")
        for _ in range(requests):
            sock.sendall(GET)
            status = reader.readline()
            assert status.split()[1] == b"200", status
            while reader.readline() not in (b"\r\n", b""):
                pass
            bodies.append(reader.read(len(HELLO)))
    return bodies


HELLOS = ["workers.http_hello:Hello", "workers.wsgi_hello:app"]


def serve_tls(pki: Path, *extra: str,
              app: str = HELLOS[0]) -> contextlib.AbstractContextManager[ServerProcess]:
    return server_process(
        "serve", app, "-b", "127.0.0.1:0", "-w", "2",
        "--certfile", str(pki / "server.pem"), "--keyfile", str(pki / "server.key"), *extra)


def test_https_with_keep_alive(pki: Path) -> None:
    with serve_tls(pki) as server:
        address = server.tcp_address()
        server.wait_workers(2)
        assert https_get(address, client_context(pki), requests=3) == [HELLO] * 3


def test_stalled_handshakes_delay_no_one(pki: Path) -> None:
    with serve_tls(pki) as server:
        address = server.tcp_address()
        server.wait_workers(2)
        stalled = [socket.create_connection(address, timeout=10) for _ in range(8)]
        try:
            for sock in stalled:  # the first bytes of a ClientHello record, then nothing
                sock.sendall(b"\x16\x03\x01\x02\x00\x01")
            context = client_context(pki)
            for _ in range(10):
                started = time.monotonic()
                assert https_get(address, context, timeout=1.0) == [HELLO]
                assert time.monotonic() - started < 1.0
        finally:
            for sock in stalled:
                sock.close()


def tls_connect(address: tuple[str, int], context: ssl.SSLContext,
                timeout: float = 10.0) -> ssl.SSLSocket:
    """A TLS connection with its handshake done."""
    raw = socket.create_connection(address, timeout=timeout)
    try:
        return context.wrap_socket(raw, server_hostname=address[0])
    except BaseException:
        raw.close()
        raise


def read_response(reader: Any) -> tuple[int, bytes]:
    """One response with a Content-Length (or none: an empty body) from a binary file."""
    status_line = reader.readline()
    assert status_line, "connection closed"
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return int(status_line.split()[1]), reader.read(length)


@contextlib.contextmanager
def dripping(socks: list[ssl.SSLSocket], head: bytes, every: float) -> Iterator[list[int]]:
    """A thread sends each of ``socks`` the next byte of ``head`` every ``every`` seconds (in
    a record of its own); yields the count of rounds sent."""
    stop = threading.Event()
    rounds = [0]

    def run() -> None:
        while not stop.is_set():
            for sock in socks:
                with contextlib.suppress(OSError):  # closed by the server: still an attacker
                    sock.send(head[rounds[0] % len(head):][:1])
            rounds[0] += 1
            stop.wait(every)  # the attack's own pace, not a wait for the server

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield rounds
    finally:
        stop.set()
        thread.join(5)


@pytest.mark.parametrize("app", HELLOS)
def test_tls_slowloris_delays_no_one(pki: Path, app: str) -> None:
    """16 clients finish the handshake, then drip a request head: fresh HTTPS clients are
    still answered within a second each (the heads wait, decrypted, in the multiplexer)."""
    with serve_tls(pki, app=app) as server:
        address = server.tcp_address()
        server.wait_workers(2)
        context = client_context(pki)
        slow = [tls_connect(address, context) for _ in range(16)]
        head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 64
        try:
            with dripping(slow, head, 0.3) as rounds:
                wait_for(lambda: rounds[0] >= 2, what="the drip under way")
                for _ in range(10):
                    started = time.monotonic()
                    assert https_get(address, context, timeout=1.0) == [HELLO]
                    assert time.monotonic() - started < 1.0
        finally:
            for sock in slow:
                sock.close()


def test_tls_head_late_gets_408_and_oversized_431(pki: Path) -> None:
    with serve_tls(pki, "--client-timeout", "1") as server:
        address = server.tcp_address()
        server.wait_workers(2)
        context = client_context(pki)
        # Dripped one byte every 0.2 s: answered 408 at the deadline, counted from the accept.
        with tls_connect(address, context) as sock:
            started = time.monotonic()
            head = iter(GET)
            sock.settimeout(0.2)  # the drip's own pace
            reply = None
            while reply is None:
                try:
                    reply = sock.recv(4096)
                except TimeoutError:
                    sock.send(bytes([next(head)]))
            assert reply.split()[1] == b"408"
            assert 0.8 < time.monotonic() - started < 4
        with tls_connect(address, context) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            assert sock.makefile("rb").readline().split()[1] == b"408"
        with tls_connect(address, context) as sock:
            with contextlib.suppress(OSError):  # the server may close while we still send
                sock.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"b" * (70 * 1024))
            assert sock.makefile("rb").readline().split()[1] == b"431"
        assert https_get(address, context) == [HELLO]


@pytest.mark.parametrize("app", HELLOS)
def test_https_keep_alive_and_pipelining(pki: Path, app: str) -> None:
    with serve_tls(pki, "--keep-alive", "2", app=app) as server:
        address = server.tcp_address()
        server.wait_workers(2)
        with tls_connect(address, client_context(pki), timeout=5) as sock:
            reader = sock.makefile("rb")
            sock.sendall(GET * 3)  # pipelined: all three in one record
            for _ in range(3):
                assert read_response(reader) == (200, HELLO)
            # A second request, and the start of a third, behind the first; the rest later:
            # the server reads its buffer, then what the multiplexer read, then the stream.
            sock.sendall(GET + GET + GET[:9])
            for _ in range(2):
                assert read_response(reader) == (200, HELLO)
            sock.sendall(GET[9:20])
            sock.sendall(GET[20:] + GET)
            for _ in range(2):
                assert read_response(reader) == (200, HELLO)


@pytest.mark.parametrize("mode", ["sync", "thread"])
def test_https_in_the_stdlib_modes(pki: Path, mode: str) -> None:
    with server_process("serve", "workers.http_hello:Hello", "-b", "127.0.0.1:0", "--mode", mode,
                        "--certfile", str(pki / "server.pem"), "--keyfile",
                        str(pki / "server.key")) as server:
        address = server.tcp_address()
        assert https_get(address, client_context(pki), requests=3) == [HELLO] * 3
        with tls_connect(address, client_context(pki), timeout=5) as sock:
            sock.sendall(GET * 2)
            reader = sock.makefile("rb")
            assert [read_response(reader) for _ in range(2)] == [(200, HELLO)] * 2


class _OwnSocket(ssl.SSLSocket):
    """A context's own socket class (tls_context() may set one): kept under the read-ahead."""


@contextlib.contextmanager
def tls_pair(pki: Path) -> Iterator[tuple[ssl.SSLSocket, ssl.SSLSocket]]:
    """(server side, client side) of a socketpair, the handshake done; the server's context
    is one TLSMixIn would use, with a socket class of its own."""
    context = server_context(str(pki / "server.pem"), str(pki / "server.key"))
    context.sslsocket_class = _OwnSocket
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(10)
        b.settimeout(10)
        server = read_ahead_context(context).wrap_socket(a, server_side=True,
                                                         do_handshake_on_connect=False)
        clients: list[ssl.SSLSocket] = []
        thread = threading.Thread(target=lambda: clients.append(
            client_context(pki).wrap_socket(b, server_hostname="127.0.0.1")))
        thread.start()
        server.do_handshake()
        thread.join(10)
        yield server, clients[0]


def test_the_head_read_ahead_is_read_first(pki: Path) -> None:
    with tls_pair(pki) as (server, client):
        assert isinstance(server, ReadAheadSSLSocket) and isinstance(server, _OwnSocket)
        client.sendall(b"GET / HTTP/1.1\r\n")
        assert wait_for(lambda: read_head(server, b"") == (Check.MORE, True))
        client.sendall(b"Host: x\r\n\r\nbody")
        assert wait_for(lambda: read_head(server, b"")[0] is Check.READY)
        assert server.ahead is not None and server.ahead.startswith(b"GET / HTTP/1.1\r\nHost")
        client.sendall(b" and more")
        small = bytearray(4)
        assert server.recv_into(small) == 4 and small == b"GET "
        assert server.recv(10) == b"/ HTTP/1.1"
        assert server.recv_into(small, 0) == 4 and small == b"\r\nHo"  # 0: the buffer's size
        rest = b"st: x\r\n\r\nbody and more"
        assert server.makefile("rb").read(len(rest)) == rest
        # A head that ends across what the handler holds and what is read ahead; too large.
        client.sendall(b"\nX")
        assert wait_for(lambda: read_head(server, b"GET / HTTP/1.1\r\n\r")[0] is Check.READY)
        assert read_head(server, b"x" * MAX_HEAD) == (Check.TOO_LARGE, False)
        client.close()
        assert wait_for(lambda: read_head(server, b"")[0] is Check.EOF)


def test_client_certificates_required_with_ca_certs(pki: Path) -> None:
    with serve_tls(pki, "--ca-certs", str(pki / "ca.pem")) as server:
        address = server.tcp_address()
        server.wait_workers(2)
        assert https_get(address, client_context(pki, with_cert=True)) == [HELLO]
        # TLS 1.3: the client's handshake may finish before the server refuses its missing
        # certificate; the refusal then arrives as an alert, or the connection just ends.
        with pytest.raises((ssl.SSLError, ConnectionError, AssertionError, IndexError)):
            https_get(address, client_context(pki))


def test_bad_certificate_files_are_one_clear_line(tmp_path: Path) -> None:
    with server_process("serve", "workers.http_hello:Hello", "-b", "127.0.0.1:0",
                        "--certfile", str(tmp_path / "missing.pem")) as server:
        assert server.wait(timeout=15) != 0
        assert "TLS: cannot load the certificate files" in server.text()
        assert "Traceback" not in server.text()


class _Pid(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


class _PeerServer(prefork.PeerCredMixIn, prefork.PreforkMixIn, socketserver.UnixStreamServer):
    pass


@pytest.mark.parametrize("admitted", [True, False])
def test_peer_credentials(tmp_path: Path, admitted: bool) -> None:
    path = str(tmp_path / "peer.sock")
    uid = os.geteuid() if admitted else os.geteuid() + 12345

    class Server(_PeerServer):
        allowed_uids = frozenset({uid})

    server = Server(path, _Pid, workers=1)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(path)
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            try:
                while chunk := sock.recv(4096):
                    data += chunk
            except ConnectionResetError:  # refused: closed with the request unread
                assert not admitted
        assert data.endswith(b"ok") if admitted else data == b""
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
