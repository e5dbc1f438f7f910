"""The connections a listener holds outside its accept queue (core/handshakes.py), and the
graceful stop's sweep taking one whose first bytes come during its wait (core/handover.py)."""

from __future__ import annotations

import select
import socket
import socketserver
import threading
from typing import Any

import pytest

from helpers import wait_for
from prefork.core.handover import take_backlog
from prefork.core.handshakes import pending

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_DEFER_ACCEPT"), reason="Linux")


def deferring(family: int = socket.AF_INET, host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(family)
    sock.bind((host, 0))
    sock.listen(16)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 5)
    return sock


def test_a_silent_client_is_held_until_its_first_bytes() -> None:
    with deferring() as listener, deferring() as other:
        assert pending(listener) == 0
        with socket.create_connection(listener.getsockname()) as client:
            wait_for(lambda: pending(listener) == 1, 5, what="the deferred connection")
            assert pending(other) == 0  # (another listener's count is its own)
            client.sendall(b"x")
            wait_for(lambda: pending(listener) == 0, 5, what="the connection promoted")
            listener.setblocking(False)
            conn, _ = listener.accept()
            conn.close()


def test_a_dual_stack_listener_counts_both_families() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    with deferring(socket.AF_INET6, "::") as listener:
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)), \
                socket.create_connection(("::1", port)):
            wait_for(lambda: pending(listener) == 2, 5, what="both deferred connections")


def test_the_stop_sweep_takes_a_held_connection_whose_bytes_come_during_its_wait() -> None:
    listener = deferring()
    listener.setblocking(False)
    fd = listener.fileno()
    server = socketserver.BaseServer.__new__(socketserver.BaseServer)
    server.socket = listener  # type: ignore[attr-defined]
    taken: list[Any] = []

    def take(fd: int) -> tuple[Any, Any] | None:
        try:
            return listener.accept()
        except BlockingIOError:
            return None

    class Limits:
        most_waiting = 100

    with socket.create_connection(listener.getsockname()) as client:
        wait_for(lambda: pending(listener) == 1, 5, what="the deferred connection")
        late = threading.Timer(0.02, client.sendall, (b"GET / HTTP/1.1\r\n\r\n",))
        late.start()
        ep = select.epoll()
        try:
            ep.register(fd, select.EPOLLIN)
            take_backlog(ep, {fd: server}, take, lambda _fd, request, _a: taken.append(request),
                         [], Limits())
        finally:
            late.join()
            ep.close()
        assert len(taken) == 1 and listener.fileno() == -1
        assert taken[0].recv(64, socket.MSG_PEEK).startswith(b"GET /")
        taken[0].close()
