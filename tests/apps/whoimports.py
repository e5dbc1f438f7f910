"""A handler whose module records, at import, the uid of the process importing it (in the
file named by $WHOIMPORTS)."""

from __future__ import annotations

import os
import socketserver

with open(os.environ["WHOIMPORTS"], "a") as _log:
    _log.write(f"{os.getpid()} {os.getuid()}\n")


class Who(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.rfile.readline()
        self.wfile.write(f"{os.getuid()}\n".encode())
