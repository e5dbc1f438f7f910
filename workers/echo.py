"""TCP line echo: ``prefork serve workers.echo:LineEcho -b 127.0.0.1:9000``."""

from __future__ import annotations

import socketserver


class LineEcho(socketserver.StreamRequestHandler):
    """Echoes each line back until the client closes the connection."""

    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line)
