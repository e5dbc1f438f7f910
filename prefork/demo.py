"""The built-in demo that ``prefork serve`` runs when no APP is named."""

from __future__ import annotations

import logging
import os
from http.server import BaseHTTPRequestHandler

access_log = logging.getLogger("prefork.access")


class DemoHandler(BaseHTTPRequestHandler):
    """Answers every GET with a short page naming the worker that served it."""

    server_version = "prefork-demo"

    def do_GET(self) -> None:
        body = (
            f"Hello from prefork!\nworker pid {os.getpid()}, master pid {os.getppid()}\n"
            f"path {self.path}\n"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        access_log.info("%s %s", self.address_string(), format % args)
