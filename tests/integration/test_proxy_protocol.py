"""The PROXY protocol (issue 18 point 1): with --proxy-protocol, a v1 or v2 header from a peer
in --proxy-allow-from sets the client address (a WSGI app's REMOTE_ADDR, an http.server
handler's client_address), before TLS too, in every mode; from any other peer, or malformed,
the connection is closed unserved and the refusal logged.  Before this, ``PROXY TCP4 ...``
got a 400."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import LOCAL, ROOT, clean_env, server_process

WSGI = "tests.apps.wsgi_plain:application"
HTTP = "tests.apps.peer_http:Peer"
V1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n"
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
MODES = ["prefork", "fork", "thread", "sync"]


def v2_tcp6(src: str, port: int) -> bytes:
    addresses = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, "::1")
                 + struct.pack("!HH", port, 8000))
    tlv = b"\x04\x00\x03abc"  # a NOOP TLV: skipped
    body = addresses + tlv
    return V2_SIGNATURE + b"\x21\x21" + struct.pack("!H", len(body)) + body


def exchange(sock: socket.socket, path: str) -> bytes:
    """One request with Connection: close; everything the server sent back."""
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    except (BrokenPipeError, ConnectionResetError):
        return b""  # the server refused the header and closed before the request went out
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def ask(address: tuple[str, int], header: bytes, path: str = "/environ",
        tls: ssl.SSLContext | None = None) -> bytes:
    with socket.create_connection(address, timeout=10) as raw:
        raw.sendall(header)  # before TLS, as a load balancer sends it
        if tls is None:
            return exchange(raw, path)
        with tls.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            return exchange(sock, path)


def body_of(reply: bytes) -> Any:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), reply[:200]
    return json.loads(body)


@pytest.mark.parametrize("mode", MODES)
def test_v1_and_v2_from_a_trusted_peer_set_the_client(mode: str) -> None:
    with server_process("serve", WSGI, "-b", LOCAL, "-w", "1", "--mode", mode,
                        "--proxy-protocol") as server:
        address = server.tcp_address()
        env = body_of(ask(address, V1))
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("203.0.113.7", "56324")
        env = body_of(ask(address, v2_tcp6("2001:db8::9", 4321)))
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::9", "4321")
        env = body_of(ask(address, b"PROXY UNKNOWN\r\n"))  # the peer stays the client
        assert env["REMOTE_ADDR"] == "127.0.0.1"


@pytest.mark.parametrize("mode", ["prefork", "thread"])
def test_an_http_server_handler_gets_client_address(mode: str) -> None:
    with server_process("serve", HTTP, "-b", LOCAL, "-w", "1", "--mode", mode,
                        "--proxy-protocol") as server:
        address = server.tcp_address()
        assert body_of(ask(address, V1, "/"))["client_address"] == ["203.0.113.7", 56324]
        v2 = v2_tcp6("2001:db8::9", 4321)
        assert body_of(ask(address, v2, "/"))["client_address"][:2] == ["2001:db8::9", 4321]


@pytest.mark.parametrize("mode", ["prefork", "thread"])
def test_refused_from_an_untrusted_peer(mode: str) -> None:
    with server_process("serve", WSGI, "-b", LOCAL, "-w", "1", "--mode", mode,
                        "--proxy-protocol", "--proxy-allow-from", "10.0.0.1") as server:
        address = server.tcp_address()
        start = server.mark()
        assert ask(address, V1) == b""  # closed unserved
        server.wait_line(r"closed a connection from 127\.0\.0\.1: a PROXY header from a peer "
                         r"not in proxy_allow_ips", start=start)


@pytest.mark.parametrize("mode", ["prefork", "sync"])
@pytest.mark.parametrize("header", [
    b"GET /environ HTTP/1.1\r\nHost: x\r\n\r\n",  # no header at all
    b"PROXY TCP4 203.0.113.7 10.0.0.1 99999 443\r\n",
    V2_SIGNATURE + b"\x21\x12\x00\x0c" + b"\0" * 12,  # a datagram family
    b"PROXY " + b"9" * 200,
], ids=["none", "v1-port", "v2-dgram", "v1-long"])
def test_malformed_is_refused(mode: str, header: bytes) -> None:
    with server_process("serve", WSGI, "-b", LOCAL, "-w", "1", "--mode", mode,
                        "--proxy-protocol") as server:
        address = server.tcp_address()
        start = server.mark()
        assert ask(address, header) == b""
        server.wait_line(r"closed a connection from 127\.0\.0\.1: PROXY protocol: ", start=start)
        env = body_of(ask(address, V1))  # and the next, valid one is served
        assert env["REMOTE_ADDR"] == "203.0.113.7"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
@pytest.mark.parametrize("mode", ["prefork", "thread"])
def test_before_tls(pki: Path, mode: str) -> None:
    with server_process("serve", WSGI, "-b", LOCAL, "-w", "1", "--mode", mode,
                        "--proxy-protocol", "--certfile", str(pki / "server.pem"),
                        "--keyfile", str(pki / "server.key")) as server:
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        address = server.tcp_address()
        env = body_of(ask(address, V1, tls=context))
        assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("203.0.113.7", "https")
        env = body_of(ask(address, v2_tcp6("2001:db8::9", 4321), tls=context))
        assert env["REMOTE_ADDR"] == "2001:db8::9"


def test_the_header_is_bounded_in_time() -> None:
    with server_process("serve", WSGI, "-b", LOCAL, "-w", "1", "--proxy-protocol",
                        "--client-timeout", "1") as server:
        address = server.tcp_address()
        start = server.mark()
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(V1[:10])  # and nothing more
            assert sock.recv(100) == b""  # closed by the deadline
        server.wait_line(r"no whole PROXY header within client_timeout", start=start)


def test_refused_at_start_on_a_datagram_listener() -> None:
    done = subprocess.run([sys.executable, "-m", "prefork", "serve",
                           "workers.udp_echo:DatagramEcho", "-b", "udp://127.0.0.1:0",
                           "--proxy-protocol"], cwd=ROOT,
                          env=clean_env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert "--proxy-protocol needs stream listeners" in done.stderr
