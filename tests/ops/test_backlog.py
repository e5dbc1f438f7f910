"""prefork.ops.backlog: the accept-queue length of real listening sockets, as the kernel says."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefork.ops.backlog import (
    AcceptQueue,
    accept_queue,
    accept_queues,
    tcp_accept_queue,
    unix_accept_queue,
)

BACKLOG = 64
PENDING = 7


@contextlib.contextmanager
def pending(listener: socket.socket, count: int) -> Iterator[list[socket.socket]]:
    """``count`` clients connected to ``listener`` and not accepted."""
    address = listener.getsockname()
    clients = []
    try:
        for _ in range(count):
            client = socket.socket(listener.family, socket.SOCK_STREAM)
            clients.append(client)
            client.connect(address)
        yield clients
    finally:
        for client in clients:
            client.close()


def test_tcp_queue_counts_connections_not_accepted() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(BACKLOG)
        assert tcp_accept_queue(listener) == (0, BACKLOG)
        with pending(listener, PENDING):
            assert accept_queue(listener) == (PENDING, BACKLOG)
            conn, _ = listener.accept()
            conn.close()
            assert accept_queue(listener) == (PENDING - 1, BACKLOG)


def test_unix_queue_counts_connections_not_accepted(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(tmp_path / "s.sock"))
        listener.listen(BACKLOG)
        if unix_accept_queue(listener) is None:
            pytest.skip("this kernel has no sock_diag for unix sockets (unix_diag)")
        assert unix_accept_queue(listener) == (0, BACKLOG)
        with pending(listener, PENDING):
            assert accept_queue(listener) == (PENDING, BACKLOG)


def test_no_queue_for_what_does_not_listen(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        assert accept_queue(udp) is None
    with socket.socket() as unbound:
        assert accept_queue(unbound) is None  # not in LISTEN state
    closed = socket.socket()
    closed.close()
    assert accept_queue(closed) is None


def test_accept_queues_labels_each_listener() -> None:
    class Server:
        def __init__(self, sock: socket.socket) -> None:
            self.socket = sock

    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(BACKLOG)
        udp.bind(("127.0.0.1", 0))
        with pending(tcp, 3):
            queues = accept_queues([Server(tcp), Server(udp)], ["tcp-name", "udp-name"])
    assert queues == [AcceptQueue("tcp-name", 3, BACKLOG)]
