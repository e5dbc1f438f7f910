"""A server whose workers always fail in post_fork; counts spawns in the file named by argv[1].

Exits with prefork's boot-failure status when serve_forever gives up.
"""

from __future__ import annotations

import logging
import os
import sys

import prefork
from prefork.command.cli import EXIT_BOOT_FAILURE
from workers.echo import LineEcho


class FailingServer(prefork.PreforkTCPServer):
    def pre_fork(self, worker: prefork.WorkerInfo) -> None:
        with open(sys.argv[1], "a") as f:
            f.write("spawn\n")

    def post_fork(self, worker: prefork.WorkerInfo) -> None:
        raise RuntimeError(f"cannot boot worker {worker.age} (pid {os.getpid()})")


logging.basicConfig(level=logging.INFO)
with FailingServer(("127.0.0.1", 0), LineEcho, workers=3) as server:
    try:
        server.serve_forever()
    except prefork.BootError as exc:
        print(f"boot error: {exc}", file=sys.stderr)
        sys.exit(EXIT_BOOT_FAILURE)
sys.exit(0)
