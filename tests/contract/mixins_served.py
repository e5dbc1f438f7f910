"""PreforkMixIn combined with the stdlib's own mix-ins: ``python mixins_served.py MODE COMBO DIR``.

MODE ``thread`` is the reference: ``(socketserver.ThreadingMixIn, http.server.HTTPServer)``;
MODE ``prefork`` is ``(prefork.PreforkMixIn, BASE)`` with BASE one of :data:`COMBOS`, 1 worker.
The handler speaks HTTP/1.1: ``/slow`` says ``slow started`` on stderr and answers once the file
``DIR/go`` exists; ``/shutdown`` calls ``self.server.shutdown()`` and answers; anything else
answers its path.  When ``serve_forever()`` returns the process says so, closes, exits 0.
"""

from __future__ import annotations

import http.server
import os
import socketserver
import sys
import time
from typing import Any

import prefork

COMBOS: dict[str, tuple[type, ...]] = {
    "threading-http": (http.server.ThreadingHTTPServer,),
    "forking-tcp": (socketserver.ForkingTCPServer,),
    "threading-tcp": (socketserver.ThreadingMixIn, socketserver.TCPServer),
}
GO_WAIT = 20.0  # seconds /slow waits for its go at most


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/slow":
            print("slow started", file=sys.stderr, flush=True)
            go = os.path.join(sys.argv[3], "go")
            deadline = time.monotonic() + GO_WAIT
            while not os.path.exists(go) and time.monotonic() < deadline:
                time.sleep(0.01)
        elif self.path == "/shutdown":
            self.server.shutdown()
        body = f"got {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    mode, combo = sys.argv[1], sys.argv[2]
    if mode == "thread":
        bases: tuple[type, ...] = (socketserver.ThreadingMixIn, http.server.HTTPServer)
    else:
        bases = (prefork.PreforkMixIn, *COMBOS[combo])
    cls = type("Server", bases, {"allow_reuse_address": True, "workers": 1})
    with cls(("127.0.0.1", 0), Handler) as server:
        print(f"port {server.server_address[1]}", file=sys.stderr, flush=True)
        server.serve_forever()
        print("serve_forever returned", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
