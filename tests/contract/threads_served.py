"""A pool started from a process that has other threads: ``python threads_served.py KIND DIR``.

KIND ``log``: a thread logs long lines without pause through a handler on a pipe (so it is
inside an ``emit``, holding the stream's lock, most of the time); each worker logs at boot
through that handler, then on stderr.
KIND ``import``: a thread imports a slow module (``DIR/slowmod.py``) in a loop, so its module
lock is held most of the time; each worker imports it at boot.  One worker, recycled after every
request (``max_requests = 1``): each request is answered by a freshly forked worker, with its
pid.  ``preload`` as a third argument forks the workers from the template.
"""

from __future__ import annotations

import logging
import os
import socketserver
import sys
import threading
from typing import Any

import prefork

KIND, FOLDER = sys.argv[1], sys.argv[2]
PRELOAD = sys.argv[3:] == ["preload"]
sys.path.insert(0, FOLDER)
log = logging.getLogger("threads_served")
noise = logging.getLogger("noise")  # the hammering thread's, on a pipe only
noise.propagate = False


class Pid(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.rfile.readline()
        self.wfile.write(b"%d\n" % os.getpid())


class Server(prefork.PreforkMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    workers = 1
    max_requests = 1
    preload = PRELOAD

    def post_fork(self, worker: Any) -> None:
        if KIND == "import":
            import slowmod  # noqa: F401  (waits for ever on a module lock held at fork)
        else:
            noise.info("a worker")  # waits for ever on the stream's lock, if held at fork
        log.info("worker pid %d booted", os.getpid())


def hammer_logging() -> None:
    while True:
        noise.info("x" * 200_000)


def drain(fd: int) -> None:
    while os.read(fd, 1 << 16):
        pass


def hammer_imports() -> None:
    while True:
        sys.modules.pop("slowmod", None)
        import slowmod  # noqa: F401


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    if KIND == "log":
        read_fd, write_fd = os.pipe()
        noise.addHandler(logging.StreamHandler(os.fdopen(write_fd, "w", buffering=1 << 16)))
        threading.Thread(target=drain, args=(read_fd,), daemon=True).start()
        threading.Thread(target=hammer_logging, daemon=True).start()
    else:
        threading.Thread(target=hammer_imports, daemon=True).start()
    with Server(("127.0.0.1", 0), Pid) as server:
        print(f"port {server.server_address[1]}", file=sys.stderr, flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
