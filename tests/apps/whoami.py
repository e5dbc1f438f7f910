"""A handler that answers with the credentials of the process serving it."""

from __future__ import annotations

import os
import socketserver


class Who(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.rfile.readline()
        groups = ",".join(str(g) for g in sorted(os.getgroups()))
        self.wfile.write(f"{os.getuid()} {os.geteuid()} {os.getgid()} {os.getegid()} "
                         f"{groups}\n".encode())
