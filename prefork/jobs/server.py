"""JobServer: the pool over a job table (socketserver's ``BaseServer`` shape).

Where each step runs.  In a worker: ``get_request()`` claims a job (one statement) as the
worker incarnation's owner token, the handler runs it, ``shutdown_request()`` finishes it
(guarded by ownership) and ``handle_error()`` schedules a retry (exponential back-off with
jitter, up to ``max_attempts``).  A worker waits on its doorbell (its ``fileno()``), never on
the table: the master rings it when a job is due (prefork/jobs/doorbells.py).  In the master,
which runs no application code, the keeper (prefork/jobs/keeper.py) runs prefork's fixed
statements: the re-queue of exactly the jobs of a reaped worker, with the reason on the row (a
death counts against ``max_crashes``, after which the job is ``dead``, so a job that kills its
worker cannot loop), the wake-ups, the leases, cancellation and pruning.

When a job can run twice: only if its worker died (or was stopped quickly) after the job's
work was done and before the finish committed, or if its whole master vanished and its lease
expired.  A job is never lost: a claimed job either finishes, is retried, or is re-queued by
the master when its worker is gone (or by any master once its lease expired).
"""

from __future__ import annotations

import logging
import os
import socketserver
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from prefork.core.contract import WorkerInfo
from prefork.core.servers import PreforkMixIn
from prefork.jobs.backends import Backend, Job
from prefork.jobs.doorbells import Doorbells
from prefork.jobs.keeper import Keeper, Settings
from prefork.jobs.metrics import render
from prefork.jobs.outcomes import backoff, error_text, exit_reason
from prefork.jobs.queue import open_backend
from prefork.jobs.stats import (
    CLAIMS,
    CURRENT,
    DONE,
    EMPTY_CLAIMS,
    FAILED,
    RETRIED,
    STATEMENTS,
    Stats,
)

log = logging.getLogger("prefork.jobs")


def boot_id() -> str:
    """This host's boot id (a new one at every boot), or the host name without one."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return os.uname().nodename


class JobServer(PreforkMixIn, socketserver.BaseServer):
    """A pool of workers running the jobs of the table at ``db_url`` (a SQLite path or
    ``sqlite:///path``, or ``postgresql://...``: prefork/jobs/backends.py).

    Methods for the caller: serve_forever(), shutdown(), server_close(), as on any server.
    The handler class is a ``socketserver.BaseRequestHandler``: ``self.request`` is the
    :class:`~prefork.jobs.backends.Job`.  Subclasses that override ``pre_fork``, ``post_fork``
    or ``worker_exit`` call super.

    Tunables (class attributes): ``max_attempts`` (runs that may raise before the job is
    ``failed``), ``max_crashes`` (worker deaths before it is ``dead``), ``retry_base`` and
    ``retry_cap`` (seconds: the back-off before retry n is ``min(cap, base * 2**(n-1))``,
    scaled by a random factor in [0.5, 1]), ``lease`` (seconds a claimed job is kept for a
    master that stopped renewing it), ``retention`` (seconds finished jobs are kept; 0:
    for ever), ``queues`` (the queues served; empty: all)."""

    max_attempts: int = 5
    max_crashes: int = 3
    retry_base: float = 1.0
    retry_cap: float = 300.0
    lease: float = 30.0
    retention: float = 7 * 86400.0
    queues: tuple[str, ...] = ()

    def __init__(self, db_url: str | Path, RequestHandlerClass: Any,
                 **kwargs: Any) -> None:
        self.db_url = str(db_url)
        open_backend(self.db_url).close()  # the schema, before any worker starts
        # Owner tokens: this host's boot, this master's incarnation, the worker's serial.
        self.incarnation = f"{boot_id()}/{os.getpid()}.{time.time_ns()}"
        self.owner = ""  # the worker's own token, set in each worker
        self.generation = 0
        self.slot = -1
        self.backend: Backend | None = None  # the worker's connection
        self.bells = Doorbells()
        self.stats = Stats()
        self.keeper = Keeper(
            Settings(self.db_url, self.incarnation, self.max_crashes, self.lease,
                     self.retention, tuple(self.queues)),
            self.bells, self.stats, self.owner_token)
        self._retried: int | None = None  # the job whose handle_error() ran
        self._started = 0.0  # time.monotonic() of the claim of the job in hand
        self._job: Job | None = None  # the job in hand, for the title
        super().__init__(None, RequestHandlerClass, **kwargs)

    @property
    def db(self) -> Any:
        """The worker's own connection (sqlite3 or psycopg), for a handler's statements."""
        assert self.backend is not None
        return self.backend.db  # type: ignore[attr-defined]

    def owner_token(self, worker: WorkerInfo) -> str:
        """The token of one worker incarnation (``age`` is never reused within a master)."""
        return f"{self.incarnation}/{worker.age}"

    # -- in each worker -------------------------------------------------------------------

    def post_fork(self, worker: WorkerInfo) -> None:
        self.owner = self.owner_token(worker)
        self.generation, self.slot = worker.generation, worker.slot
        self.backend = open_backend(self.db_url)
        self.queues = tuple(self.queues)
        self.backend.tally = partial(self.stats.add, self.slot, STATEMENTS)
        self.bells.ring(self.slot)  # a first claim at once: jobs may be waiting

    def fileno(self) -> int:
        """The worker's doorbell: its loop claims when it is readable (-1 outside a worker)."""
        return self.bells.fd(self.slot) if self.slot >= 0 else -1

    def get_request(self) -> tuple[Job, None]:
        """Claim the next due job; OSError (socketserver's "nothing this time") if none."""
        assert self.backend is not None
        bells, slot, backend = self.bells, self.slot, self.backend
        bells.set_idle(slot, True)  # before the claim: see doorbells.py
        job = backend.claim(self.owner, self.generation, self.lease, self.queues)
        if job is None:
            # The bell is drained only now (while jobs come, it stays rung: the loop claims
            # again after each job, no system call); once more after the drain, so that a
            # ring for a job committed after the first claim is not eaten.
            bells.drain(slot)
            job = backend.claim(self.owner, self.generation, self.lease, self.queues)
            if job is None:
                self.stats.add(slot, EMPTY_CLAIMS)
                bells.ring_master()  # it watches the table again while a worker is idle
                raise OSError("no job due")
            bells.ring(slot)  # after this job, try the next at once
        self.stats.add(slot, CLAIMS)
        self.stats.set(slot, CURRENT, job.id)
        self._started = time.monotonic()
        bells.set_idle(slot, False)
        self._retried = None
        self._job = job
        return job, None

    def busy_title(self) -> str:
        """The worker's title while it runs a job: ``job 42 queue=default attempt 1``."""
        job = self._job
        if job is None:
            return "busy"
        return f"job {job.id} queue={job.queue} attempt {job.attempt}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """The handler raised: retry after a back-off, or fail the job after max_attempts."""
        assert self.backend is not None and isinstance(request, Job)
        self._job = None
        exc = sys.exc_info()[1]
        error = error_text(exc)
        delay = backoff(request.attempt, self.retry_base, self.retry_cap)
        state = self.backend.retry(request, self.owner, error, delay, self.max_attempts)
        self._retried = request.id
        self.stats.set(self.slot, CURRENT, 0)
        self.stats.add(self.slot, FAILED if state == "failed" else RETRIED)
        self.stats.observe(self.slot, time.monotonic() - self._started)
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
        assert self.backend is not None
        self._job = None
        self.stats.set(self.slot, CURRENT, 0)
        self.stats.observe(self.slot, time.monotonic() - self._started)
        if self.backend.finish(request, self.owner):
            self.stats.add(self.slot, DONE)
        else:
            log.warning("job %d finished but no longer ours: nothing changed", request.id)

    # -- in the master --------------------------------------------------------------------

    def pre_fork(self, worker: WorkerInfo) -> None:
        self.keeper.started(worker)

    def worker_exit(self, worker: WorkerInfo, status: int) -> None:
        """Re-queue exactly the jobs the reaped worker held (prefork's fixed statement)."""
        self.keeper.exited(worker, status, exit_reason(status))

    def master_fds(self) -> dict[int, Callable[[], None]]:
        return self.keeper.fds()

    def master_actions(self, now: float) -> float | None:
        return self.keeper.actions(now)

    def worker_status(self, worker: WorkerInfo) -> dict[str, Any]:
        """The job ``worker`` runs, for ``prefork status`` (from the shared counters)."""
        job = self.stats.get(worker.slot, CURRENT)
        return {"job": job} if job else {}

    def metrics_text(self) -> str:
        """The job pool's families (prefork/jobs/metrics.py)."""
        return super().metrics_text() + render(self.stats, self.keeper.depth())

    def server_close(self) -> None:
        super().server_close()
        if self.slot < 0:  # the master (a worker leaves with os._exit)
            self.keeper.close()
