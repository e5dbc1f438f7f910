"""TCP line echo: ``prefork serve workers.echo:LineEcho -b 127.0.0.1:9000``."""

from __future__ import annotations

import logging
import os
import socketserver

log = logging.getLogger("prefork.worker")


class LineEcho(socketserver.StreamRequestHandler):
    """Echoes each line back until the client closes the connection.

    A line longer than ``max_line`` bytes (newline included) is refused: the connection is
    closed without an answer, so a client that never sends a newline costs at most
    ``max_line`` bytes of memory, not all the host has.
    """

    max_line = 64 * 1024

    def handle(self) -> None:
        while line := self.rfile.readline(self.max_line + 1):
            if len(line) > self.max_line:
                log.debug("worker (pid %d) %r: line longer than %d bytes; closing",
                          os.getpid(), self.client_address, self.max_line)
                return
            self.wfile.write(line)
