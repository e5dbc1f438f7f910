"""The tests' view of a job table on either backend, and a handler that records its runs.

:class:`Table` opens prefork's backend on the URL and adds a ``runs`` table where
:class:`Recording` writes one row per run (job, attempt, pid, start time) through the worker's
own connection, with ``:name`` parameters that both backends take."""

from __future__ import annotations

import contextlib
import os
import signal
import socketserver
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

from helpers import forked, wait_exit
from prefork.jobs import JobServer, enqueue, open_backend


class Recording(socketserver.BaseRequestHandler):
    """Records each run, then does what the payload says: "ok", "fail" (raise), "hang once"
    (sleep on the first attempt), "sleep" (payload["s"] seconds), "hog once" (allocate
    payload["mb"] MB on the first attempt), "poison" (kill its own worker)."""

    def handle(self) -> None:
        job = self.request
        self.server.backend.execute(  # type: ignore[attr-defined]
            "INSERT INTO runs (job, attempt, pid, at) VALUES (:job, :attempt, :pid, :at)",
            {"job": job.id, "attempt": job.attempt, "pid": os.getpid(), "at": time.time()})
        kind = job.payload["kind"]
        if kind == "fail":
            raise ValueError("told to fail")
        if kind == "hang once" and job.crashes == 0:
            time.sleep(60)
        if kind == "sleep":
            time.sleep(job.payload["s"])
        if kind == "hog once" and job.attempt == 1:
            hog = bytearray(job.payload["mb"] * 1024 * 1024)  # past max_memory: MemoryError
            del hog
        if kind == "poison":
            os.kill(os.getpid(), signal.SIGKILL)
        job.result = {"done by": os.getpid()}


class Server(JobServer):
    max_crashes = 3
    max_attempts = 3
    retry_base = 0.01
    retry_cap = 0.05


class Table:
    """prefork's backend on ``url`` plus the ``runs`` table.  Methods: q(sql, **params)
    (all rows), one(sql, **params) (the first column of the first row), enqueue(payload, ...),
    row(job_id), runs(job_id), count(state)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.backend = open_backend(url)
        self.backend.execute("CREATE TABLE IF NOT EXISTS runs (job INTEGER, attempt INTEGER,"
                             " pid INTEGER, at DOUBLE PRECISION)", {})

    def q(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.backend.execute(sql, params).fetchall()]

    def one(self, sql: str, **params: Any) -> Any:
        return self.backend.execute(sql, params).fetchone()[0]

    def enqueue(self, payload: Any, **kwargs: Any) -> int:
        job_id = self.backend.enqueue(payload, **kwargs)
        assert job_id is not None
        return job_id

    def fill(self, count: int, kind: str = "ok") -> None:
        """``count`` jobs in one transaction."""
        db = self.backend.db  # type: ignore[attr-defined]
        if isinstance(db, sqlite3.Connection):
            db.execute("BEGIN")
            for n in range(count):
                enqueue(db, {"kind": kind, "n": n})
            db.execute("COMMIT")
            return
        with db.transaction():
            for n in range(count):
                enqueue(db, {"kind": kind, "n": n})

    def row(self, job_id: int) -> dict[str, Any]:
        found = self.backend.row(job_id)
        assert found is not None
        return found

    def runs(self, job_id: int) -> list[tuple[int, int, float]]:
        return [(a, p, t) for a, p, t in self.q(
            "SELECT attempt, pid, at FROM runs WHERE job = :job ORDER BY at", job=job_id)]

    def count(self, state: str) -> int:
        return int(self.one("SELECT count(*) FROM prefork_jobs WHERE state = :s", s=state))

    def close(self) -> None:
        self.backend.close()


@contextlib.contextmanager
def serving(server: JobServer) -> Iterator[int]:
    """``server`` (made in this process, so its shared counters are readable here:
    ``server.stats``) served by a master in a forked child; TERM at the end, exit 0."""
    with forked(server.serve_forever) as pid:
        try:
            yield pid
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        assert wait_exit(pid) == 0


@contextlib.contextmanager
def pool(url: str, workers: int = 2, server_class: type[JobServer] = Server,
         handler: type[socketserver.BaseRequestHandler] = Recording,
         expect: Callable[[int], bool] = lambda status: status == 0) -> Iterator[int]:
    """The pool's master in a forked child (its pid): a process with no other thread, so no
    worker is forked while a thread of the test is inside SQLite (its mutexes would stay
    locked in the child).  TERM at the end; the master must exit 0."""

    def master() -> None:
        server_class(url, handler, workers=workers).serve_forever()

    with forked(master) as pid:
        try:
            yield pid
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        status = wait_exit(pid)
        assert expect(status), status
