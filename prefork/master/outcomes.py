"""What a worker's report or exit means: the master's judgement of the events the pool collects.

A report is a worker speaking through the report pipe (ready, due for recycling, a handler
called ``shutdown()``: a graceful stop, see prefork.core.pooled).  An exit is a verdict to
reach: a worker that was told to stop, or that stopped while the master stops, simply stopped;
one that dies before it reported ready failed to boot -- or, while a reload's new generation
starts, ends that reload; one that dies by itself soon after ready, outside a request, is in a
crash loop and backed off like a boot failure (see prefork.master.boot); any other death is a
crash, replaced at once.

The clock is the caller's (``now``), so the supervisor's tests drive it.
"""

from __future__ import annotations

import logging
import os
import signal
from collections import Counter
from collections.abc import Callable

from prefork.core.contract import RECYCLE_REPORTS, REPORT_READY, REPORT_SHUTDOWN, WorkerInfo
from prefork.master.boot import CRASH_WINDOW, BootGuard
from prefork.master.generations import Generations
from prefork.master.pool import Pool
from prefork.master.recycling import Recycler
from prefork.master.upgrade import describe_status

log = logging.getLogger("prefork.master")

Failure = Callable[[str, str], None]  # who, why


class Outcomes:
    """Methods for the loop: report(info, event, now), exit(info, status, now)."""

    def __init__(
        self, pool: Pool, generations: Generations, recycler: Recycler, boot: BootGuard,
        restarts: Counter[str], stopping: Callable[[], bool], abort_reload: Failure,
        stop: Callable[[], None],
    ) -> None:
        self.pool = pool
        self.generations = generations
        self.recycler = recycler
        self.boot = boot
        self.restarts = restarts  # the master's: reason -> count
        self.stopping = stopping  # whether the master is stopping
        self.abort_reload = abort_reload
        self.stop = stop  # a graceful stop, as shutdown() from another thread asks

    def report(self, info: WorkerInfo, event: int, now: float) -> None:
        if event == REPORT_READY:
            self.boot.ready(now)
        elif event in RECYCLE_REPORTS:  # max_requests, or the memory budget (core/memguard.py)
            served = self.pool.requests_served(info)
            self.recycler.due(info, RECYCLE_REPORTS[event], f" after {served} requests")
        elif event == REPORT_SHUTDOWN and not self.stopping():
            log.info("worker %d (pid %d) called shutdown(): stopping the pool gracefully",
                     info.age, info.pid)
            self.stop()

    def exit(self, info: WorkerInfo, status: int, now: float) -> None:
        self.recycler.forget(info.pid)
        why = describe_status(status)
        who = f"worker {info.age} (pid {info.pid})"
        if self.stopping() or info.stopping:
            log.debug("%s stopped: %s", who, why)
        elif not info.ready and self.generations.reloading and (
            info.generation == self.generations.number
        ):
            self.abort_reload(f"worker {info.age}, pid {info.pid}", why)
        elif not info.ready:
            self.boot.failed(why, who, now)
        elif crash_loop(info, status, now):  # backed off, see boot.py
            self.restarts["crash"] += 1
            self.boot.failed(why, who, now, now - info.ready_at)
        else:
            self.restarts["crash"] += 1
            log.warning("%s died: %s; replacing it", who, why)


def crash_loop(info: WorkerInfo, status: int, now: float) -> bool:
    """Died by itself soon after ready, in no request (no KILL/TERM from outside, no client)."""
    outside = os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGKILL, signal.SIGTERM)
    return not (info.died_busy or outside) and now - info.ready_at < CRASH_WINDOW
