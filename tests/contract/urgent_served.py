"""A line handler with ``handle_urgent()``: ``python urgent_served.py MODE``.

MODE ``prefork`` (the pool, 1 worker) or ``prefork-no-inline`` (with ``oob_inline = False``);
``prefork serve urgent_served:Urgent`` serves it in any ``--mode``.  Each line is answered
``line <repr>``; each urgent notice writes ``URGENT <n>`` (the n-th on this connection).
"""

from __future__ import annotations

import socketserver
import sys

import prefork


class Urgent(socketserver.StreamRequestHandler):
    def setup(self) -> None:
        super().setup()
        self.notices = 0

    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(b"line %r\n" % line)

    def handle_urgent(self) -> None:
        self.notices += 1
        self.wfile.write(b"URGENT %d\n" % self.notices)


def main() -> None:
    attrs = {"allow_reuse_address": True, "workers": 1,
             "oob_inline": sys.argv[1] != "prefork-no-inline"}
    cls = type("Server", (prefork.PreforkMixIn, socketserver.TCPServer), attrs)
    with cls(("127.0.0.1", 0), Urgent) as server:
        print(f"port {server.server_address[1]}", file=sys.stderr, flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
