"""A line-based service that speaks first (an FTP-like greeting): ``python oob_served.py MODE``.

MODE ``thread`` (the reference, ``ThreadingMixIn``), ``prefork`` (the pool, 1 worker) or
``prefork-no-inline`` (the pool with ``oob_inline = False``).  After ``220 hello`` each line
received is answered ``226 <line as repr>``.
"""

from __future__ import annotations

import socketserver
import sys

import prefork


class Lines(socketserver.StreamRequestHandler):
    ready_when = prefork.Ready.ACCEPTED  # the server speaks first

    def handle(self) -> None:
        self.wfile.write(b"220 hello\r\n")
        for line in self.rfile:
            self.wfile.write(b"226 %r\r\n" % line)


def main() -> None:
    mode = sys.argv[1]
    mixin = socketserver.ThreadingMixIn if mode == "thread" else prefork.PreforkMixIn
    attrs = {"allow_reuse_address": True, "workers": 1, "daemon_threads": True}
    if mode == "prefork-no-inline":
        attrs["oob_inline"] = False
    cls = type("Server", (mixin, socketserver.TCPServer), attrs)
    with cls(("127.0.0.1", 0), Lines) as server:
        print(f"port {server.server_address[1]}", file=sys.stderr, flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
