"""A request body an ``http.server`` handler did not read never holds a handler and is never
taken for the next request (issue 19, point 2; unread.py).  Before, the unread body of a
kept-alive connection waited in the multiplexer as if it began the next request head: a body
that looked like a request was served as one, and a dripped body got a 408 after its 200."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from helpers import LOCAL, server_process, wait_for

APP = "tests.apps.big:Big"  # POST answers "PID PATH" without reading the body


def _response(sock: socket.socket, data: bytearray) -> bytes:
    """One Content-Length response from ``sock`` (``data``: bytes read past it are kept)."""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, bytes(data)
        data += chunk
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, bytes(data)
        rest += chunk
    data[:] = rest[length:]
    assert head.startswith(b"HTTP/1.1 200 "), head
    return rest[:length]


def test_an_unread_body_that_looks_like_a_request_is_dropped_not_served() -> None:
    with server_process("serve", APP, "-b", LOCAL, "-w", "1") as server:
        address = server.tcp_address()
        server.ready_workers(1)
        inner = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(b"POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%b"
                         % (len(inner), inner))
            data = bytearray()
            assert _response(sock, data).endswith(b" /form")
            sock.sendall(b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n")  # the same connection
            assert _response(sock, data).endswith(b" /after")
            assert not data


def test_dripped_unread_bodies_hold_no_handler_and_close_after_the_response() -> None:
    with server_process("serve", APP, "-b", LOCAL, "-w", "2") as server:
        address = server.tcp_address()
        server.ready_workers(2)
        stop = threading.Event()
        drippers = [socket.create_connection(address, timeout=10) for _ in range(2)]

        def drip() -> None:  # 10 bytes a second of a 10 MB body, on each
            while not stop.wait(1.0):
                for sock in drippers:
                    with contextlib.suppress(OSError):
                        sock.send(b"x" * 10)

        thread = threading.Thread(target=drip, daemon=True)
        try:
            for sock in drippers:
                sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\n"
                             b"Content-Length: 10000000\r\n\r\n" + b"x" * 10)
            thread.start()
            for sock in drippers:
                start = time.monotonic()
                assert _response(sock, bytearray()).endswith(b" /upload")
                # Then the end (EOF, or a reset for the body still coming), not a 408 later.
                try:
                    rest = sock.recv(65536)
                except ConnectionResetError:
                    rest = b""
                assert rest == b"", rest
                assert time.monotonic() - start < 2.0
            waits = []
            for _ in range(20):
                begun = time.monotonic()
                with socket.create_connection(address, timeout=10) as fresh:
                    fresh.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    assert _response(fresh, bytearray()).endswith(b" /pid")
                waits.append(time.monotonic() - begun)
            assert max(waits) < 1.0, waits
        finally:
            stop.set()
            if thread.is_alive():
                thread.join()
            for sock in drippers:
                sock.close()
        wait_for(lambda: server.live(), what="the pool alive")
