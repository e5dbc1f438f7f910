"""An HTTP/1.1 http.server handler whose every GET takes 0.5 s and answers its path: a request
in flight for the graceful-stop tests (pipelined requests behind it)."""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler
from typing import Any


class Slow(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        time.sleep(0.5)
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass
