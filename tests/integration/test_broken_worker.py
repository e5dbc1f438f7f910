"""Handlers that break their worker's own fds (issue 19, point 4), against the real command:

- a handler that closes the listening socket's fd: that worker exits with a logged reason and
  is replaced, and the pool keeps answering (before: it swallowed EBADF from every accept,
  stranded a connection per wake-up and spun at 100 % CPU, unnoticed by the master);
- a handler that closes fds 0-2: the worker reopens them before its next accept, so no client
  socket becomes its stderr, and its tracebacks still reach the log (before: new connections got
  fds 0-2 and a traceback went to a kept-alive client);
- a handler that closes the worker's signal pipe: at the next signal the worker exits, saying
  why (before: it slept through TERM until graceful_timeout's SIGKILL, unnoticed).
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket

from helpers import LOCAL, http_get, pid_alive, server_process, wait_for

APP = "tests.apps.breakers:Breaker"


def _pid(address: tuple[str, int], path: str = "/pid") -> int:
    status, body = http_get(*address, path=path)
    assert status == 200, (status, body)
    return int(body)


def _exchange(sock: socket.socket, path: str) -> bytes:
    """One keep-alive GET on ``sock``: everything the response's framing says it holds, from
    the first byte received (so anything sent before the status line shows)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"\r\nContent-Length: (\d+)", head)
    assert match is not None, data
    while len(body) < int(match.group(1)):
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        body += chunk
    return head + b"\r\n\r\n" + body


def test_a_worker_whose_listening_fd_was_closed_exits_logged_and_is_replaced() -> None:
    with server_process("serve", APP, "-b", LOCAL, "-w", "2") as server:
        address = server.tcp_address()
        server.ready_workers(2)
        broken = _pid(address, "/close-listener")

        # The broken worker is still woken for new connections: each must be answered (the
        # one it was woken for by its replacement), and the worker must leave, saying why.
        answered = 0

        def replaced() -> bool:
            nonlocal answered
            _pid(address)
            answered += 1
            return not pid_alive(broken)

        wait_for(replaced, 30, interval=0.02, what=f"worker {broken} to exit")
        server.wait_line(rf"worker \d+ \(pid {broken}\) broken: accept\(\) on listening fd \d+ "
                         r"failed with E[A-Z]+ ")
        live = server.ready_workers(2, timeout=15)
        assert broken not in live
        served = {_pid(address) for _ in range(40)}
        assert served <= live and answered > 0


def test_a_handler_closing_fds_0_to_2_sends_no_log_bytes_to_clients() -> None:
    with server_process("serve", APP, "-b", LOCAL, "-w", "1") as server:
        address = server.tcp_address()
        pid = server.ready_workers(1).pop()
        assert _pid(address, "/close-std") == pid
        # Connections accepted now would have taken fds 0, 1 and 2.
        clients = [socket.create_connection(address, timeout=15) for _ in range(4)]
        try:
            for sock in clients:
                assert _exchange(sock, "/pid").startswith(b"HTTP/1.1 200 "), "first"
            mark = server.mark()
            for _ in range(2):  # tracebacks, written to the worker's stderr
                status = None
                with contextlib.suppress(ConnectionError, IndexError):  # closed, no reply
                    status, _body = http_get(*address, path="/boom")
                assert status in (None, 500)
            # Each traceback was written before its connection closed.
            for sock in clients:  # nothing arrived before each status line
                reply = _exchange(sock, "/pid")
                assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
                assert reply.endswith(b"%d\n" % pid)
            server.wait_line(r"RuntimeError: boom", start=mark)  # written before the close
            server.wait_line(rf"worker \(pid {pid}\): fds 0,1,2 were closed")
        finally:
            for sock in clients:
                sock.close()


def test_a_worker_whose_signal_pipe_was_closed_exits_logged_at_the_next_signal() -> None:
    """Its loop can no longer be woken for a signal: at the next one it exits, saying why,
    instead of sleeping through a graceful stop until graceful_timeout's SIGKILL (30 s)."""
    with server_process("serve", APP, "-b", LOCAL, "-w", "1") as server:
        address = server.tcp_address()
        broken = server.ready_workers(1).pop()
        assert _pid(address, "/close-pipes") == broken
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
        server.wait_line(rf"worker \d+ \(pid {broken}\) broken: its signal pipe was closed ")
