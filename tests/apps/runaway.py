"""Handlers for tests/integration/test_runaway.py and test_operator_truth.py: the first line of a
request says what to do.

``pid``    answer this worker's pid;
``hog``    answer the pid, then allocate (and touch) 1 MiB after 1 MiB without end;
``shmhog`` the same in shared mappings (``MAP_SHARED``), which RLIMIT_DATA does not count, so
           only the master's look at RSS can stop it (core/memguard.py);
``hold N`` answer the pid, then keep N MiB resident and wait for one more line;
``wait``   answer the pid, then wait for one more line.

:class:`ExitEveryTime` ends its worker with ``os._exit(1)`` in every request, before answering.
"""

from __future__ import annotations

import mmap
import os
import socketserver
from typing import Any

MIB = 1024 * 1024


class Runaway(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        words = self.rfile.readline().split()
        command = words[0] if words else b""
        self.wfile.write(b"%d\n" % os.getpid())
        self.wfile.flush()
        kept: list[bytes] = []
        if command == b"hog":
            while True:
                kept.append(b"x" * MIB)
        elif command == b"shmhog":
            shared: list[mmap.mmap] = []
            while True:
                block = mmap.mmap(-1, MIB, flags=mmap.MAP_SHARED)
                block.write(b"x" * MIB)
                shared.append(block)
        elif command == b"hold":
            kept.extend(b"x" * MIB for _ in range(int(words[1])))
            self.rfile.readline()
        elif command == b"wait":
            self.rfile.readline()


class ExitEveryTime(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.rfile.readline()
        os._exit(1)


def leaking_app(environ: dict[str, object], start_response: Any) -> list[bytes]:
    """WSGI: ``/pid`` answers the worker's pid; ``/hog`` allocates 1 MiB after 1 MiB without end
    (tests/integration/test_memory_budget.py)."""
    if environ["PATH_INFO"] == "/hog":
        kept = []
        while True:
            kept.append(b"x" * MIB)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%d\n" % os.getpid()]
