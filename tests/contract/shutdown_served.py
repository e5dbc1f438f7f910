"""``self.server.shutdown()`` called from a handler: ``python shutdown_served.py MODE``.

MODE ``thread`` (the reference, ``ThreadingMixIn``) or ``prefork`` (2 workers).  A line ``stop``
makes the handler call ``shutdown()``, then answer ``stopping``; any other line is echoed.  When
``serve_forever()`` returns the process says ``serve_forever returned`` and exits 0.
"""

from __future__ import annotations

import socketserver
import sys

import prefork


class Stopper(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline()
        if line == b"stop\n":
            self.server.shutdown()
            self.wfile.write(b"stopping\n")
        else:
            self.wfile.write(b"echo " + line)


def main() -> None:
    mixin = prefork.PreforkMixIn if sys.argv[1] == "prefork" else socketserver.ThreadingMixIn
    cls = type("Server", (mixin, socketserver.TCPServer),
               {"allow_reuse_address": True, "workers": 2})
    with cls(("127.0.0.1", 0), Stopper) as server:
        print(f"port {server.server_address[1]}", file=sys.stderr, flush=True)
        server.serve_forever()
        print("serve_forever returned", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
