"""The job pool's work in the master: prefork's own fixed statements, never application code.

What it does, each from the master's loop (``master_fds``/``master_actions``/``worker_exit``):

* **re-queue at the reap**: the jobs a reaped worker held, in one guarded UPDATE, with the
  reason; then it rings an idle worker at once, so the job runs again within milliseconds.
  Once more :data:`LATE_REQUEUE` seconds later: on PostgreSQL a claim whose worker was killed
  while the statement ran still commits on the server, possibly after the first re-queue
  (SQLite's claim dies with its process).  And should both miss it, the job's lease is not
  renewed (leases are renewed by the live workers' tokens) and it expires;
* **wake-up**: when the watcher (inotify on SQLite's WAL, LISTEN on PostgreSQL) says the table
  changed and some worker is idle, it counts the due jobs (at most one per idle worker) and
  rings that many idle workers' doorbells (prefork/jobs/doorbells.py); scheduled jobs set a
  deadline; a safety poll every :data:`SAFETY_POLL` seconds covers what no watcher saw.  The
  watcher is waited on only while a worker is idle; a worker that finds nothing rings the
  master's bell (doorbells.py), and the master counts the due jobs then;
* **leases**: every ``lease / 3`` seconds it renews the leases of its live workers' jobs and
  re-queues, once, any job whose lease expired (its master or host is gone);
* **cancel and per-job timeouts**: while a worker is busy, once a second, it looks for its
  jobs that were cancelled or ran past their timeout and kills their workers (a job stuck in C
  too); the reap then writes the reason;
* **pruning** of finished jobs older than ``retention``, every :data:`PRUNE_EVERY` seconds.

Its SQLite connection is closed before every fork (``forking()``): a child must not inherit an
open SQLite connection.  A database error is logged and the connection opened again the next
turn (PostgreSQL: the LISTEN too, and a dispatch, since notifications may have been missed).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from prefork.core.contract import WorkerInfo
from prefork.jobs.backends import Backend
from prefork.jobs.doorbells import Doorbells
from prefork.jobs.queue import open_backend
from prefork.jobs.stats import (
    CRASHED,
    CURRENT,
    MASTER,
    REQUEUED,
    RESCUED,
    RINGS,
    STATEMENTS,
    Stats,
)

log = logging.getLogger("prefork.jobs")

SAFETY_POLL = 2.0  # seconds between checks of the table when nothing said it changed
STOP_CHECK = 1.0  # seconds between looks for cancelled or overdue jobs, while any runs
PRUNE_EVERY = 300.0
RETRY_AFTER_ERROR = 1.0
LATE_REQUEUE = 1.0  # seconds after a reap, the re-queue once more (see the module's text)


@dataclass
class Settings:
    """The tunables of the server the keeper works for."""

    url: str
    incarnation: str
    max_crashes: int
    lease: float
    retention: float
    queues: tuple[str, ...] = ()


@dataclass
class Timers:
    """Monotonic times of the keeper's next periodic statements."""

    poll: float = 0.0
    renew: float = 0.0
    stop_check: float = 0.0
    prune: float = 0.0
    next_due: float | None = None  # a scheduled job becomes due


class Keeper:
    """Methods: forking(), started(worker), exited(worker, status, reason), fds(), actions(now),
    close().  ``owner_of(worker)`` gives a worker's owner token."""

    def __init__(self, settings: Settings, bells: Doorbells, stats: Stats,
                 owner_of: Callable[[WorkerInfo], str]) -> None:
        self.settings, self.bells, self.stats, self.owner_of = settings, bells, stats, owner_of
        self.live: dict[int, WorkerInfo] = {}  # slot -> worker
        self.kills: dict[int, str] = {}  # worker age -> why the keeper killed it
        self.backend: Backend | None = None
        self.watcher: Any = None
        self.dirty = True  # something may be due: check at the next turn
        # Re-queues to run again: (monotonic time, owner token, reason, crashed).
        self.late: list[tuple[float, str, str, bool]] = []
        self.timers = Timers()

    # -- the connection ------------------------------------------------------------------

    def _db(self) -> Backend:
        if self.backend is None:
            self.backend = open_backend(self.settings.url)
            self.backend.tally = partial(self.stats.add, MASTER, STATEMENTS)
            if self.watcher is None or self.backend.dialect == "postgresql":
                if self.watcher is not None:
                    self.watcher.close()
                self.watcher = self.backend.watcher()
            self.dirty = True
        return self.backend

    def _drop(self, what: str) -> None:
        log.exception("master (pid %d): job table %s failed", os.getpid(), what)
        if self.backend is not None:
            try:
                self.backend.close()
            except Exception:
                log.debug("closing the failed connection failed too", exc_info=True)
        self.backend = None

    def forking(self) -> None:
        """Before a fork: a SQLite connection must not be inherited (the LISTEN connection
        of PostgreSQL may: the child never uses it, and leaves with ``os._exit``)."""
        if self.backend is not None and self.backend.dialect == "sqlite":
            self.backend.close()
            self.backend = None

    # -- the workers ---------------------------------------------------------------------

    def started(self, worker: WorkerInfo) -> None:
        """In the master, before ``worker`` is forked: its doorbell."""
        self.forking()
        self.bells.make(worker.slot)
        self.live[worker.slot] = worker

    def exited(self, worker: WorkerInfo, status: int, reason: str) -> None:
        """Re-queue exactly the jobs the reaped worker held, with the reason."""
        if self.live.get(worker.slot) is worker:
            del self.live[worker.slot]
        self.stats.set(worker.slot, CURRENT, 0)  # the worker is gone: the row is ours now
        why = self.kills.pop(worker.age, None)
        if why is not None:
            reason = f"{why}: {reason}"
        crashed = status != 0
        owner = self.owner_of(worker)
        self.late.append((time.monotonic() + LATE_REQUEUE, owner, reason, crashed))
        try:
            count = self._db().requeue_held(owner, reason, crashed, self.settings.max_crashes)
        except Exception:
            self._drop("re-queue")
            raise
        self._requeued(count, crashed, f"of worker {worker.age} (pid {worker.pid}): {reason}")

    def _requeued(self, count: int, crashed: bool, what: str) -> None:
        if count:
            self.stats.add(MASTER, REQUEUED, count)
            self.stats.add(MASTER, CRASHED, count if crashed else 0)
            self.dirty = True
            log.warning("re-queued %d job(s) %s", count, what)

    # -- the loop ------------------------------------------------------------------------

    def fds(self) -> dict[int, Callable[[], None]]:
        """The master's bell always; the table's watcher while a worker is idle (a busy one
        claims again after its job, and rings the master's bell when it finds nothing)."""
        fds = {self.bells.master_fd: self._on_idle}
        watcher = self.watcher
        if watcher is None:
            return fds
        if not self._idle():
            watcher.pause()  # SQLite: no inotify event per commit while all are busy
            return fds
        watcher.resume()
        fd = watcher.fileno()
        if fd is not None:
            fds[fd] = self._on_change
        return fds

    def _on_idle(self) -> None:
        """A worker found nothing: watch again, and look at the table (before anything that
        was committed while the watch was paused could be missed)."""
        self.bells.drain_master()
        if self.watcher is not None:
            self.watcher.resume()
        self.dirty = True

    def _on_change(self) -> None:
        try:
            if self.watcher is not None and self.watcher.consume():
                self.dirty = True
        except Exception:
            self._drop("watch")

    def actions(self, now: float) -> float:
        """Whatever is due; the next time something will be."""
        timers = self.timers
        if timers.next_due is not None and now >= timers.next_due:
            timers.next_due, self.dirty = None, True
        try:
            while self.late and self.late[0][0] <= now:
                _, owner, reason, crashed = self.late[0]
                count = self._db().requeue_held(owner, reason, crashed,
                                                self.settings.max_crashes)
                self.late.pop(0)
                self._requeued(count, crashed, f"of {owner}, claimed as it died: {reason}")
            if self.dirty or now >= timers.poll:
                self._dispatch(now)
            if now >= timers.renew:
                self._leases(now)
            if now >= timers.stop_check and self._any_busy():
                self._stop_overdue(now)
            if self.settings.retention and now >= timers.prune:
                timers.prune = now + PRUNE_EVERY
                pruned = self._db().prune(self.settings.retention)
                if pruned:
                    log.info("pruned %d finished job(s)", pruned)
        except Exception:
            self._drop("statement")
            self.dirty = True
            return now + RETRY_AFTER_ERROR
        # Consume what the master's own statements left for the watcher, so they do not wake
        # the loop again (a change made meanwhile by others is seen: it sets dirty).
        self._on_change()
        if self.dirty:
            return now
        deadlines = [timers.poll, timers.renew, *(at for at, *_ in self.late[:1])]
        if timers.next_due is not None:
            deadlines.append(timers.next_due)
        if self._any_busy():
            deadlines.append(timers.stop_check)
        return min(deadlines)

    def _idle(self) -> list[int]:
        return [slot for slot, worker in self.live.items()
                if not worker.stopping and self.bells.idle(slot)]

    def _any_busy(self) -> bool:
        """Some worker holds a job (the id it set at its claim: stats.py)."""
        return any(self.stats.get(slot, CURRENT) for slot in self.live)

    def _dispatch(self, now: float) -> None:
        self.dirty = False
        self.timers.poll = now + SAFETY_POLL
        idle = self._idle()
        if not idle:  # the busy ones claim again after their job (doorbells.py)
            return
        count, later = self._db().due(len(idle), self.settings.queues)
        for slot in idle[:count]:
            self.bells.set_idle(slot, False)  # rung: not a candidate for the next job
            self.bells.ring(slot)
        self.stats.add(MASTER, RINGS, min(count, len(idle)))
        if later is not None:
            self.timers.next_due = now + max(0.0, later - time.time())

    def _leases(self, now: float) -> None:
        settings = self.settings
        self.timers.renew = now + settings.lease / 3
        db = self._db()
        if self._any_busy():  # an idle pool renews nothing (and sends nothing for it)
            db.renew([self.owner_of(w) for w in self.live.values()], settings.lease)
        rescued = db.rescue(settings.max_crashes)
        if rescued:
            self.stats.add(MASTER, RESCUED, rescued)
            self.dirty = True
            log.warning("re-queued %d job(s) whose lease expired", rescued)

    def _stop_overdue(self, now: float) -> None:
        self.timers.stop_check = now + STOP_CHECK
        by_owner = {self.owner_of(w): w for w in self.live.values()}
        for job_id, owner, cancelled in self._db().to_stop(self.settings.incarnation):
            worker = by_owner.get(owner)
            if worker is None or worker.age in self.kills or not worker.pid:
                continue
            why = "cancelled" if cancelled else "job timeout"
            self.kills[worker.age] = why
            log.warning("job %d %s: killing worker %d (pid %d)", job_id, why, worker.age,
                        worker.pid)
            try:
                os.kill(worker.pid, signal.SIGKILL)
            except ProcessLookupError:
                continue

    def depth(self) -> dict[str, dict[str, int]] | None:
        """Jobs by queue and state (for the metrics), or None if the table cannot be read."""
        try:
            return self._db().counts()
        except Exception:
            self._drop("count")
            return None

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None
        if self.backend is not None:
            self.backend.close()
            self.backend = None
