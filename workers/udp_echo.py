"""UDP echo: ``prefork serve workers.udp_echo:DatagramEcho -b udp://127.0.0.1:9001``."""

from __future__ import annotations

import socketserver


class DatagramEcho(socketserver.DatagramRequestHandler):
    """Sends each datagram back to its sender."""

    def handle(self) -> None:
        self.wfile.write(self.rfile.read())
