"""socketserver calls ``self.verify_request`` (and the other request methods) through the
instance, so a method set on the server *instance* is honoured: the inline request path is not
taken then.  (Found by review: ``dispatch._closing`` looked at ``type(server)`` only.)"""

from __future__ import annotations

import socket
import socketserver
from typing import Any

from prefork.core import dispatch
from prefork.core.keepalive import HoldsConnections


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(self.request.recv(100))


class Server(HoldsConnections, socketserver.TCPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Echo, bind_and_activate=False)


def test_a_verify_request_set_on_the_instance_is_honoured() -> None:
    server = Server()
    refused: list[Any] = []

    def deny(request: Any, client_address: Any) -> bool:
        refused.append(client_address)
        return False

    server.verify_request = deny  # type: ignore[method-assign]
    server_side, client = socket.socketpair()
    client.settimeout(2)
    try:
        dispatch.request_path(server)(server_side, ("peer", 1))
        assert refused == [("peer", 1)]
        assert client.recv(100) == b""  # refused: closed without an answer
    finally:
        server_side.close()
        client.close()
        server.server_close()
