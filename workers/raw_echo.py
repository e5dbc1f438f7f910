"""The minimal raw handler: one ``recv``, one ``sendall``, the connection closed by the server.
``prefork serve workers.raw_echo:Echo -b 127.0.0.1:9000`` (the raw-path benchmark's handler:
``scripts/bench_cpu.py``, workload ``raw`` of ``scripts/bench.py``)."""

from __future__ import annotations

import socketserver


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(self.request.recv(4096))
