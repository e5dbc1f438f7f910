"""A connection per request against a real worker (apps/closing.py serves those whose only
request is plain and says close): curl's HTTP/1.0 and ``Connection: close`` requests, a
response larger than the client takes at once (left to the worker's outbox, then closed), the
access log's line, an application's error (500, logged once), and a client that sends its
request and resets at once, after which the worker still serves."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from helpers import LOCAL, server_process, wait_for

APP = "tests.apps.wsgi_plain:application"
CLOSE = b"Connection: close\r\n"


def exchange(address: tuple[str, int], raw: bytes, rcvbuf: int = 0) -> bytes:
    """``raw`` on a new connection; everything until the server closes it."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(20)
    sock.connect(address)
    try:
        sock.sendall(raw)
        data = bytearray()
        while chunk := sock.recv(65536):
            data += chunk
        return bytes(data)
    finally:
        sock.close()


def test_closing_requests_from_real_clients(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with server_process("serve", APP, "-b", LOCAL, "-w", "1",
                        "--access-logfile", str(log)) as server:
        address = server.tcp_address()
        first = server.ready_workers(1)
        got = exchange(address, b"GET /hello HTTP/1.1\r\nHost: t\r\n" + CLOSE + b"\r\n")
        assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(b"\r\n\r\nhello\n")
        assert b"Connection: close\r\n" in got and b"Content-Length: 6\r\n" in got
        got = exchange(address, b"GET /hello HTTP/1.0\r\nHost: t\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(b"hello\n"), got
        assert b"Connection: close\r\n" in got
        got = exchange(address, b"HEAD /hello HTTP/1.1\r\nHost: t\r\n" + CLOSE + b"\r\n")
        assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(b"\r\n\r\n"), got
        # Four MB to a client whose receive buffer is small: the rest is sent by the worker.
        big = 4_000_000
        got = exchange(address, b"GET /big?%d HTTP/1.1\r\nHost: t\r\n" % big + CLOSE
                       + b"\r\n", rcvbuf=4096)
        head, _, body = got.partition(b"\r\n\r\n")
        assert b"Content-Length: %d" % big in head and body == b"x" * big
        mark = server.mark()
        got = exchange(address, b"GET /fail HTTP/1.1\r\nHost: t\r\n" + CLOSE + b"\r\n")
        assert got.startswith(b"HTTP/1.1 500 "), got
        server.wait_line(r"error in the application on GET /fail", 10, mark)
        assert server.text().count("RuntimeError: the app failed on purpose") == 1
        # A client that sends its request and resets at once.
        rude = socket.create_connection(address)
        rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        rude.sendall(b"GET /big?1000000 HTTP/1.1\r\nHost: t\r\n" + CLOSE + b"\r\n")
        rude.close()
        if shutil.which("curl"):
            for flag in ("-0", "-HConnection: close"):
                done = subprocess.run(["curl", "-sS", flag, f"http://{address[0]}:"
                                       f"{address[1]}/environ?q=1"], capture_output=True,
                                      timeout=20, check=True)
                assert b'"QUERY_STRING": "q=1"' in done.stdout, done.stdout
                assert b'"REMOTE_ADDR": "127.0.0.1"' in done.stdout
        got = exchange(address, b"GET /hello HTTP/1.1\r\nHost: t\r\n" + CLOSE + b"\r\n")
        assert got.endswith(b"hello\n")
        wait_for(lambda: len(log.read_text().splitlines()) >= 6 if log.exists() else False,
                 what="the access lines")
        lines = log.read_text().splitlines()
        assert '"GET /hello HTTP/1.0" 200 6' in lines[1], lines
        assert f'"GET /big?{big} HTTP/1.1" 200 {big}' in lines[3], lines
        assert '"GET /fail HTTP/1.1" 500' in lines[4], lines
        assert server.ready_workers(1) == first  # (the same worker served them all)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk_with_a_connection_per_request_sees_no_error() -> None:
    with server_process("serve", APP, "-b", LOCAL, "-w", "2") as server:
        host, port = server.tcp_address()
        done = subprocess.run(["wrk", "-t1", "-c8", "-d1", "-H", "Connection: close",
                               f"http://{host}:{port}/hello"], capture_output=True,
                              text=True, timeout=30, check=True)
        assert "requests in" in done.stdout, done.stdout
        assert "Socket errors" not in done.stdout and "Non-2xx" not in done.stdout, done.stdout
