"""A request body the application did not read never holds its handler (issue 19, point 2):
what has arrived is dropped, and a body still on its way closes the connection after the
response.  Before, the WSGI worker drained up to 1 MiB of it at the client's pace, and a
client dripping (or stalling) its body kept a 1-worker pool from answering anyone else."""

from __future__ import annotations

import socket

from helpers import LOCAL, http_get, server_process

APP = "tests.apps.wsgi_plain:application"  # GET/POST /pid answers the pid, reading no body


def _response(sock: socket.socket) -> bytes:
    """One response: its head and its Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, data
        body += chunk
    return head + b"\r\n\r\n" + body


def test_a_stalled_unread_body_closes_the_connection_and_frees_the_worker() -> None:
    with server_process("serve", APP, "-b", LOCAL, "-w", "1") as server:
        address = server.tcp_address()
        pid = server.ready_workers(1).pop()
        stalled = socket.create_connection(address, timeout=15)
        try:
            stalled.sendall(b"POST /pid HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n"
                            + b"x" * 100)
            assert _response(stalled).startswith(b"HTTP/1.1 200 ")
            # The rest of the body never comes: the worker must not wait for it.
            for _ in range(3):
                status, body = http_get(*address, path="/pid", timeout=15)
                assert (status, body) == (200, str(pid).encode())
            stalled.settimeout(15)
            assert stalled.recv(65536) == b""  # closed after the response
        finally:
            stalled.close()


def test_an_unread_body_that_arrived_whole_keeps_the_connection() -> None:
    with server_process("serve", APP, "-b", LOCAL, "-w", "1") as server:
        address = server.tcp_address()
        pid = server.ready_workers(1).pop()
        request = b"POST /pid HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
        with socket.create_connection(address, timeout=15) as sock:
            for _ in range(2):  # the second on the same connection: it was kept
                sock.sendall(request)
                head = _response(sock)
                assert head.startswith(b"HTTP/1.1 200 ")
                assert head.endswith(str(pid).encode())
