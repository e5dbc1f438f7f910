"""JobServer: the pool over a job table (socketserver's ``BaseServer`` shape).

Where each step runs.  In a worker: ``get_request()`` claims a job (one statement) as the
worker incarnation's owner token, the handler runs it, ``shutdown_request()`` finishes it
(guarded by ownership) and ``handle_error()`` schedules a retry (exponential back-off with
jitter, up to ``max_attempts``).  In the master, which runs no application code:
``worker_exit()`` -- the pool's hook for "a worker exited with status S" -- runs one fixed
UPDATE that re-queues exactly the jobs the reaped worker held, with the reason (the signal or
the exit status) on the row; a death counts against ``max_crashes``, after which the job is
``dead``, so a job that kills its worker cannot loop.

When a job can run twice: only if its worker died (or was stopped quickly) after the job's
work was done and before the finish committed.  A job is never lost: a claimed job either
finishes, is retried, or is re-queued by the master when its worker is gone.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socketserver
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from prefork.core.contract import WorkerInfo
from prefork.core.servers import PreforkMixIn
from prefork.jobs.queue import Job, claim, connect, finish, requeue_held, retry

log = logging.getLogger("prefork.jobs")


def boot_id() -> str:
    """This host's boot id (a new one at every boot), or the host name without one."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return os.uname().nodename


def exit_reason(status: int) -> str:
    """What a worker's exit status (as ``os.waitstatus_to_exitcode``) says, for the row."""
    if status < 0:
        try:
            return f"worker killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"worker killed by signal {-status}"
    return f"worker exited with status {status}"


class JobServer(PreforkMixIn, socketserver.BaseServer):
    """A pool of workers running the jobs of the SQLite table at ``db_path``.

    Methods for the caller: serve_forever(), shutdown(), server_close(), as on any server.
    The handler class is a ``socketserver.BaseRequestHandler``: ``self.request`` is the
    :class:`~prefork.jobs.queue.Job`.  Subclasses that override ``post_fork`` call super.

    Tunables (class attributes): ``max_attempts`` (runs that may raise before the job is
    ``failed``), ``max_crashes`` (worker deaths before it is ``dead``), ``retry_base`` and
    ``retry_cap`` (seconds: the back-off before retry n is ``min(cap, base * 2**(n-1))``,
    scaled by a random factor in [0.5, 1]), ``idle_wait`` (seconds between claims while the
    queue is empty)."""

    max_attempts: int = 5
    max_crashes: int = 3
    retry_base: float = 1.0
    retry_cap: float = 300.0
    idle_wait: float = 0.05

    def __init__(self, db_path: str | Path, RequestHandlerClass: Any,
                 **kwargs: Any) -> None:
        self.db_path = str(db_path)
        connect(self.db_path).close()  # the schema, before any worker starts
        # Owner tokens: this host's boot, this master's incarnation, the worker's serial.
        self.incarnation = f"{boot_id()}/{os.getpid()}.{time.time_ns()}"
        self.owner = ""  # the worker's own token, set in each worker
        self.db: sqlite3.Connection | None = None  # the worker's connection
        self._retried: int | None = None  # the job whose handle_error() ran
        super().__init__(None, RequestHandlerClass, **kwargs)

    def owner_token(self, worker: WorkerInfo) -> str:
        """The token of one worker incarnation (``age`` is never reused within a master)."""
        return f"{self.incarnation}/{worker.age}"

    # -- in each worker -------------------------------------------------------------------

    def post_fork(self, worker: WorkerInfo) -> None:
        self.owner = self.owner_token(worker)
        self.db = connect(self.db_path)

    def get_request(self) -> tuple[Job, None]:
        """Claim the next due job, waiting while there is none (a stop signal ends the wait:
        core/pulling.py; a job claimed as it arrives is re-queued by the master)."""
        assert self.db is not None
        while True:
            job = claim(self.db, self.owner)
            if job is not None:
                self._retried = None
                return job, None
            time.sleep(self.idle_wait)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """The handler raised: retry after a back-off, or fail the job after max_attempts."""
        assert self.db is not None and isinstance(request, Job)
        exc = sys.exc_info()[1]
        error = f"{type(exc).__name__}: {exc}"
        delay = min(self.retry_cap, self.retry_base * 2 ** (request.attempt - 1))
        delay *= random.uniform(0.5, 1.0)
        state = retry(self.db, request, self.owner, error, delay, self.max_attempts)
        self._retried = request.id
        log.warning("job %d attempt %d failed (%s): %s", request.id, request.attempt, error,
                    "no longer ours" if state is None else state, exc_info=True)

    def shutdown_request(self, request: Any) -> None:
        """The handler returned: finish the job if it is still ours.  (After handle_error, or
        while an exception that stops the worker passes, nothing: the retry is written, or the
        master re-queues the job when the worker is gone.)"""
        if not isinstance(request, Job) or request.id == self._retried:
            return
        if sys.exc_info()[1] is not None:
            return
        assert self.db is not None
        if not finish(self.db, request, self.owner):
            log.warning("job %d finished but no longer ours: nothing changed", request.id)

    # -- in the master --------------------------------------------------------------------

    def worker_exit(self, worker: WorkerInfo, status: int) -> None:
        """Re-queue exactly the jobs the reaped worker held (prefork's fixed statement)."""
        db = connect(self.db_path)
        try:
            count = requeue_held(db, self.owner_token(worker), exit_reason(status),
                                       crashed=status != 0, max_crashes=self.max_crashes)
        finally:
            db.close()
        if count:
            log.warning("re-queued %d job(s) of worker %d (pid %d): %s", count, worker.age,
                        worker.pid, exit_reason(status))
