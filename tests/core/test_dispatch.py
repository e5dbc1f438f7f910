"""socketserver's request path as a worker runs it (core/dispatch.py): the inline path for
servers that keep socketserver's own methods and the general one must end every outcome of a
handler the same way, over real sockets."""

from __future__ import annotations

import socket
import socketserver
from collections.abc import Iterator
from typing import Any

import pytest

from prefork.core import dispatch, keepalive
from prefork.core.keepalive import HoldsConnections


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(self.request.recv(100))


class Fails(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        raise ValueError("handler bug")


class Exits(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        raise SystemExit(3)


class Holds(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(b"first")
        self.held = keepalive.hold(self.request, self)

    def resume(self) -> bool:
        return False

    def buffered(self) -> bytes:
        return b""

    def close(self) -> None:
        pass


class Server(HoldsConnections, socketserver.TCPServer):
    """What a prefork server is for the path: HoldsConnections over TCPServer (not bound)."""

    def __init__(self, handler: type) -> None:
        super().__init__(("127.0.0.1", 0), handler, bind_and_activate=False)
        self.errors: list[Any] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.errors.append(client_address)


class Verifying(Server):
    """Overrides a request method: the general path."""

    def __init__(self, handler: type, admit: bool) -> None:
        super().__init__(handler)
        self.admit = admit
        self.verified = 0

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.verified += 1
        return self.admit


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server_side, client = socket.socketpair()
    client.settimeout(2)
    yield server_side, client
    server_side.close()
    client.close()


def closed_for_writing(client: socket.socket) -> bool:
    """The server side shut down or closed: the client reads EOF."""
    return client.recv(100) == b""


def make(kind: str, handler: type) -> Server:
    return Server(handler) if kind == "direct" else Verifying(handler, admit=True)


def test_the_inline_path_is_taken_only_for_socketservers_own_methods() -> None:
    assert dispatch._closing(Server(Echo)) == "tcp"
    assert dispatch._closing(Verifying(Echo, admit=True)) is None
    udp = socketserver.UDPServer(("127.0.0.1", 0), Echo, bind_and_activate=False)
    assert dispatch._closing(udp) == "udp"
    udp.server_close()

    class Closing(Server):
        def close_request(self, request: Any) -> None:
            super().close_request(request)

    assert dispatch._closing(Closing(Echo)) is None


@pytest.mark.parametrize("kind", ["direct", "general"])
def test_a_served_connection_is_shut_down_and_closed(
    kind: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    server_side, client = pair
    client.sendall(b"ping")
    assert dispatch.request_path(make(kind, Echo))(server_side, "peer") is None
    assert client.recv(100) == b"ping"
    assert closed_for_writing(client)
    assert server_side.fileno() == -1


@pytest.mark.parametrize("kind", ["direct", "general"])
def test_a_failing_handler_is_reported_and_its_connection_closed(
    kind: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    server_side, client = pair
    server = make(kind, Fails)
    assert dispatch.request_path(server)(server_side, "peer") is None
    assert server.errors == ["peer"]
    assert closed_for_writing(client)
    assert server_side.fileno() == -1


@pytest.mark.parametrize("kind", ["direct", "general"])
def test_a_base_exception_closes_the_connection_and_propagates(
    kind: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    server_side, _ = pair
    server = make(kind, Exits)
    with pytest.raises(SystemExit):
        dispatch.request_path(server)(server_side, "peer")
    assert server.errors == []
    assert server_side.fileno() == -1


@pytest.mark.parametrize("kind", ["direct", "general"])
def test_a_held_connection_stays_open_and_the_offer_is_emptied(
    kind: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    server_side, client = pair
    resumable = dispatch.request_path(make(kind, Holds))(server_side, "peer")
    assert isinstance(resumable, Holds) and resumable.held
    assert client.recv(100) == b"first"
    assert server_side.fileno() != -1  # not closed: the worker's multiplexer has it now
    client.setblocking(False)
    with pytest.raises(BlockingIOError):  # not shut down either
        client.recv(100)
    # Between dispatches nothing can be held.
    assert not keepalive.hold(server_side, resumable)


def test_a_refused_connection_is_closed_unserved(
    pair: tuple[socket.socket, socket.socket]
) -> None:
    server_side, client = pair
    server = Verifying(Echo, admit=False)
    assert dispatch.request_path(server)(server_side, "peer") is None
    assert server.verified == 1
    assert closed_for_writing(client)


def test_a_server_that_does_not_hold_connections_refuses_a_hold(
    pair: tuple[socket.socket, socket.socket]
) -> None:
    server_side, client = pair
    plain = socketserver.TCPServer(("127.0.0.1", 0), Holds, bind_and_activate=False)
    assert dispatch._closing(plain) == "tcp"
    assert dispatch.request_path(plain)(server_side, "peer") is None
    assert client.recv(100) == b"first"
    assert closed_for_writing(client)
    plain.server_close()
