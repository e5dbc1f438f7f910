"""Job handlers for the ``prefork jobs`` tests (tests/jobs/test_command.py, test_modes.py)."""

from __future__ import annotations

import os
import socketserver
import sqlite3
import threading
import time


class Record(socketserver.BaseRequestHandler):
    """Stores the worker's pid as the result; payload {"hang": true} sleeps on the job's first
    run (before any worker died running it)."""

    def handle(self) -> None:
        job = self.request
        if job.payload.get("hang") and job.crashes == 0:
            time.sleep(60)
        job.result = {"pid": os.getpid(), "n": job.payload.get("n")}


class Counted(socketserver.BaseRequestHandler):
    """One class for the pool and the stdlib modes (tests/jobs/test_modes.py): each run is
    written, as it starts, to the table ``runs`` on the job server's connection for this
    thread or process (``self.server.db``); payload {"sleep": S} sleeps S seconds on the job's
    first run (before any process died running it)."""

    def handle(self) -> None:
        job = self.request
        db = self.server.db  # type: ignore[attr-defined]
        row = (job.id, os.getpid(), threading.get_ident(), time.time())
        if isinstance(db, sqlite3.Connection):
            db.execute("INSERT INTO runs VALUES (?, ?, ?, ?)", row)
        else:
            db.execute("INSERT INTO runs VALUES (%s, %s, %s, %s)", row)
        if job.payload.get("sleep") and job.crashes == 0:
            time.sleep(job.payload["sleep"])
        job.result = {"pid": os.getpid()}
