"""Job handlers for the ``prefork jobs`` tests (tests/jobs/test_command.py)."""

from __future__ import annotations

import os
import socketserver
import time


class Record(socketserver.BaseRequestHandler):
    """Stores the worker's pid as the result; payload {"hang": true} sleeps on the job's first
    run (before any worker died running it)."""

    def handle(self) -> None:
        job = self.request
        if job.payload.get("hang") and job.crashes == 0:
            time.sleep(60)
        job.result = {"pid": os.getpid(), "n": job.payload.get("n")}
