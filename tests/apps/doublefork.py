"""A handler whose subprocess leaves a grandchild behind (``sh -c 'sleep &'``): orphaned, it
is re-parented to PID 1 or the nearest subreaper, which must collect it."""

from __future__ import annotations

import socketserver
import subprocess


class Spawner(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.rfile.readline()
        subprocess.run(["sh", "-c", "sleep 0.1 &"], check=True)
        self.wfile.write(b"ok\n")
