"""A handler that breaks its own worker the ways a stray C extension or a careless library
does, for tests/integration/test_broken_worker.py.

``GET /pid`` answers the worker's pid; ``/close-listener`` closes the listening socket's fd
under the worker, ``/close-std`` closes fds 0-2, ``/close-pipes`` every pipe of the process
but 0-2 (the worker's signal pipe among them), all then answering the pid; ``/boom`` raises, so a
traceback is written to the worker's stderr.  HTTP/1.1: connections are kept alive.
"""

from __future__ import annotations

import contextlib
import os
import stat
from http.server import BaseHTTPRequestHandler


class Breaker(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/close-listener":
            os.close(self.server.socket.fileno())  # type: ignore[attr-defined]
        elif self.path == "/close-pipes":
            for fd in map(int, os.listdir("/proc/self/fd")):
                with contextlib.suppress(OSError):
                    if fd > 2 and stat.S_ISFIFO(os.fstat(fd).st_mode):
                        os.close(fd)
        elif self.path == "/close-std":
            for fd in (0, 1, 2):
                os.close(fd)
        elif self.path == "/boom":
            raise RuntimeError("boom: a traceback for the worker's stderr")
        body = b"%d\n" % os.getpid()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass
