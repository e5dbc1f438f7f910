"""The master's policies: recycling workers, killing hung requests, sizing an adaptive pool.

Each policy is a decision over a read-only view of the pool -- the scoreboard (shared memory),
psutil (``/proc``) and the clock, never a question to a worker, so a stuck worker cannot hide --
and returns *actions*; the master applies them with its own verbs (spawn a replacement first,
then retire; signal; resize).  Policies keep only their own timers, and their intervals are
parameters, so a test drives them with a fake view and a fake clock in microseconds.

Settings are read from the server at each check, so a reload that changes them applies at once.

Memory has two policies.  A worker over ``max_memory`` is *recycled*: replaced once its
request is done, which costs nobody anything.  But a request that keeps allocating never gets
done, and recycling would wait on it while it eats the host; so a worker whose request in
flight is past the limit by a margin -- over RUNAWAY_FACTOR times it, or over it for
RUNAWAY_GRACE seconds of the same request -- is stopped mid-request like a hung one (stack
dump, then SIGKILL).  Only busy workers can run away, and reading one RSS is a read of
``/proc/PID/statm``, so busy workers are looked at often (``Intervals.busy_memory``), and very
often (``Intervals.over_memory``) once one is over the limit: at hundreds of MB a second, the
margin is crossed in a fraction of a second.  (Like a hung request, a request that starts
cannot announce itself: with ``max_memory`` set, the master looks at the scoreboard every
``busy_memory`` seconds, and reads the RSS of the busy workers only.)

A worker frozen with SIGSTOP cannot answer the stack-dump signal (a stopped process handles
none): the action says so (``DumpStack.stopped``) and it is killed at once.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from prefork.core.contract import RECYCLE_REPORTS, REPORT_OVER_MEMORY, PoolServer, WorkerInfo
from prefork.core.memguard import memory_limit
from prefork.core.scoreboard import Slot, State
from prefork.master.sizing import adaptive_range

# A hung worker is asked for its stack (SIGUSR2 -> faulthandler), then killed this much later.
STACK_DUMP_GRACE = 0.2
# A runaway's stack dump (from C, a few ms) gets less: it allocates all the while.
RUNAWAY_DUMP_GRACE = 0.05
MEMORY_CHECK_INTERVAL = 5.0  # every worker's RSS, for recycling
BUSY_MEMORY_INTERVAL = 0.1  # busy workers' RSS, for runaway requests
OVER_MEMORY_INTERVAL = 0.02  # ... while one of them is over max_memory
RUNAWAY_FACTOR = 2.0  # a request past this many times max_memory is stopped at once
RUNAWAY_GRACE = 3.0  # seconds a request may stay over max_memory before it is stopped
MAX_AGE_JITTER = 0.1  # max_age plus up to 10 %, so workers born together do not retire together
# Why a worker is recycled (and, for a runaway's kill, the restarts' reason).
AGE, MEMORY = "max_age", RECYCLE_REPORTS[REPORT_OVER_MEMORY]
# The adaptive pool looks at the scoreboard this often and changes the size by at most one
# worker per look (and not while a spawn is still booting): the spawn rate limit.
ADAPT_INTERVAL = 0.5
# kill_at of a worker already sent SIGKILL: no new deadline, no second dump while it dies.
KILLED = math.inf
# A hung request cannot announce itself: the scoreboard is read a few times per timeout.
HUNG_LOOKS_PER_TIMEOUT = 4
HUNG_LOOK_MAX = 1.0


@dataclass(frozen=True)
class Intervals:
    memory: float = MEMORY_CHECK_INTERVAL
    busy_memory: float = BUSY_MEMORY_INTERVAL
    over_memory: float = OVER_MEMORY_INTERVAL
    adapt: float = ADAPT_INTERVAL
    hung_look_max: float = HUNG_LOOK_MAX


class PoolView(Protocol):
    """What policies may look at.  ``steady`` is False while the pool is stopping, reloading,
    paused, booting a worker or replacing one: no time to resize."""

    @property
    def size(self) -> int: ...

    def live(self) -> Sequence[WorkerInfo]: ...

    def current(self) -> Sequence[WorkerInfo]: ...

    def slot(self, info: WorkerInfo) -> Slot: ...

    def memory_mb(self, pid: int) -> float | None: ...

    def stopped(self, pid: int) -> bool: ...

    def steady(self) -> bool: ...


@dataclass(frozen=True)
class Recycle:
    worker: WorkerInfo
    reason: str  # AGE, MEMORY

    @property
    def once(self) -> bool:
        """Due once (its recycle_at cleared): a recycle by age, not one that memory repeats."""
        return self.reason == AGE


@dataclass(frozen=True)
class DumpStack:
    """A request in flight longer than the timeout, or running away with memory (``rss_mb``
    set): dump the stack now, kill at ``kill_at``.  ``stopped``: the worker is stopped
    (SIGSTOP), no dump will come; kill it now."""

    worker: WorkerInfo
    request_age: float
    kill_at: float
    stopped: bool = False
    rss_mb: float | None = None


@dataclass(frozen=True)
class Kill:
    """The stack-dump grace is over (or, with ``boot_waited``, a new worker did not report
    ready within boot_timeout): SIGKILL the worker's process group."""

    worker: WorkerInfo
    boot_waited: float = 0.0
    retired: bool = False  # a retired worker still there graceful_timeout later


@dataclass(frozen=True)
class Resize:
    """Change the pool size by one; when shrinking, ``retire`` names the idle worker to go."""

    size: int
    why: str  # for the log
    retire: WorkerInfo | None = None


Action = Recycle | DumpStack | Kill | Resize


def boot_limit(server: PoolServer) -> float:
    """Seconds a new process of the pool -- a worker, or a preload template -- may take to
    report ready before it is killed (0: no limit).  Read here, at each look, so a reload that
    changes it applies at once; the spawner asks it for the templates."""
    return server.boot_timeout


def recycle_deadline(server: PoolServer, started: float) -> float:
    """When a worker started at ``started`` is due for recycling by age (0.0: never); the
    pool sets it on the worker when it spawns one, the age check reads it."""
    if not server.max_age:
        return 0.0
    return started + server.max_age + random.uniform(0, server.max_age * MAX_AGE_JITTER)


def request_limit(server: PoolServer) -> float:
    """Seconds a request may run before its worker is killed (0: no limit)."""
    return server.request_timeout


class Policies:
    """All of them, with one deadline.  Methods: deadline(view, now), check(view, now)."""

    def __init__(self, server: PoolServer, intervals: Intervals | None = None) -> None:
        self.server = server
        self.intervals = intervals or Intervals()
        self.next_memory_check = 0.0
        self.next_busy_check = 0.0
        self.over: dict[int, tuple[float, float]] = {}  # pid -> (request_started, over since)
        self.next_adapt = 0.0

    def adaptive(self) -> bool:
        return bool(self.server.min_spare or self.server.max_spare)

    def deadline(self, view: PoolView, now: float) -> float | None:
        """The next time check() has something to do (None: only when the pool changes)."""
        deadlines = [w.kill_at for w in view.live() if w.kill_at and w.kill_at != KILLED]
        deadlines.extend(w.recycle_at for w in view.live() if w.recycle_at)
        deadlines.extend(w.retire_by for w in view.live()
                         if w.retire_by and w.kill_at != KILLED)
        boot = boot_limit(self.server)
        if boot:
            deadlines.extend(w.started + boot for w in view.live()
                             if not w.ready and not w.kill_at)
        timeout = request_limit(self.server)
        if timeout:
            look = min(self.intervals.hung_look_max, timeout / HUNG_LOOKS_PER_TIMEOUT)
            deadlines.append(now + look)
        if memory_limit(self.server):
            # A worker cannot say that its request started: the scoreboard is looked at.
            deadlines.extend((self.next_memory_check, self.next_busy_check))
        if self.adaptive():
            deadlines.append(self.next_adapt)
        return min(deadlines) if deadlines else None

    def check(self, view: PoolView, now: float) -> list[Action]:
        actions: list[Action] = []
        timeout, boot = request_limit(self.server), boot_limit(self.server)
        for info in view.live():
            if info.kill_at and now >= info.kill_at:
                actions.append(Kill(info))
            elif info.retire_by and now >= info.retire_by and info.kill_at != KILLED:
                actions.append(Kill(info, retired=True))
            elif info.recycle_at and now >= info.recycle_at:
                actions.append(Recycle(info, AGE))
            elif not info.ready and not info.kill_at and boot and now - info.started > boot:
                # an import that hangs: its exit is a boot failure, or ends a reload
                actions.append(Kill(info, boot_waited=now - info.started))
            elif timeout and info.ready and not info.kill_at:
                age = view.slot(info).request_age(now)
                if age is not None and age > timeout:
                    stopped = view.stopped(info.pid)
                    actions.append(DumpStack(info, age, now + STACK_DUMP_GRACE, stopped))
        if self.adaptive() and now >= self.next_adapt:
            self.next_adapt = now + self.intervals.adapt
            resize = self._adapt(view)
            if resize is not None:
                actions.append(resize)
        if memory_limit(self.server) and now >= self.next_busy_check:
            actions.extend(self._runaways(view, now, {a.worker.pid for a in actions
                                                      if isinstance(a, (DumpStack, Kill))}))
        if memory_limit(self.server) and now >= self.next_memory_check:
            self.next_memory_check = now + self.intervals.memory
            for info in view.live():
                rss = view.memory_mb(info.pid)
                if rss is not None and rss > memory_limit(self.server) and info.ready:
                    actions.append(Recycle(info, MEMORY))
        return actions

    @staticmethod
    def _in_request(view: PoolView, info: WorkerInfo, now: float) -> float | None:
        """The age of the request ``info`` is serving, if it may still be stopped."""
        if not info.ready or info.kill_at:
            return None
        return view.slot(info).request_age(now)

    def _runaways(self, view: PoolView, now: float, acted: set[int]) -> list[Action]:
        """Busy workers past max_memory by the margin (see the module's docstring); not those
        in ``acted``, which already have an action."""
        limit = memory_limit(self.server)
        over: dict[int, tuple[float, float]] = {}
        actions: list[Action] = []
        for info in view.live():
            age = self._in_request(view, info, now) if info.pid not in acted else None
            rss = view.memory_mb(info.pid) if age is not None else None
            if age is None or rss is None or rss <= limit:
                continue
            started = view.slot(info).request_started
            was_started, since = self.over.get(info.pid, (started, now))
            if was_started != started:  # another request: it starts counting anew
                since = now
            if rss > limit * RUNAWAY_FACTOR or now - since >= RUNAWAY_GRACE:
                stopped = view.stopped(info.pid)
                actions.append(DumpStack(info, age, now + RUNAWAY_DUMP_GRACE, stopped, rss))
            else:
                over[info.pid] = (started, since)
        self.over = over
        interval = self.intervals.over_memory if over else self.intervals.busy_memory
        self.next_busy_check = now + interval
        return actions

    def _adapt(self, view: PoolView) -> Resize | None:
        """Grow the pool while fewer than ``min_spare`` workers are idle, shrink it while more
        than ``max_spare`` are, within [workers, max_children], one worker per look."""
        if not view.steady():
            return None
        idle = [w for w in view.current() if view.slot(w).state == State.IDLE]
        low, high = adaptive_range(self.server)
        min_spare, max_spare = self.server.min_spare, self.server.max_spare
        if min_spare and len(idle) < min_spare and view.size < high:
            why = f"{len(idle)} idle < min_spare {min_spare}: growing to {view.size + 1}"
            return Resize(view.size + 1, why)
        if max_spare and len(idle) > max_spare and view.size > low:
            why = f"{len(idle)} idle > max_spare {max_spare}: shrinking to {view.size - 1}"
            return Resize(view.size - 1, why, retire=max(idle, key=lambda w: w.age))
        return None
