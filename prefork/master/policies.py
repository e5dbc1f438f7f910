"""The master's policies: recycling workers, killing hung requests, sizing an adaptive pool.

Each decides from what the master can see without asking a worker -- the scoreboard (shared
memory), psutil (``/proc``) and the clock -- and acts through the master's own verbs: spawn a
replacement first, then retire; signal; resize.  :class:`PolicyMixIn` is mixed into
:class:`prefork.master.supervisor.Master`; the
attributes and methods it names below are the master's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections import deque
from typing import TYPE_CHECKING

from prefork.core.scoreboard import Scoreboard, State
from prefork.core.worker import WorkerInfo
from prefork.ops.status import worker_memory_mb

if TYPE_CHECKING:
    from prefork.core.servers import PreforkMixIn

log = logging.getLogger("prefork.master")

# A hung worker is asked for its stack (SIGUSR2 -> faulthandler), then killed this much later.
STACK_DUMP_GRACE = 0.2
MEMORY_CHECK_INTERVAL = 5.0
# The adaptive pool looks at the scoreboard this often and changes the size by at most one
# worker per look (and not while a spawn is still booting): the spawn rate limit.
ADAPT_INTERVAL = 0.5


class PolicyMixIn:
    """Recycling (max_requests, max_age, max_memory), hung requests (timeout) and the adaptive
    pool (min_spare/max_spare), driven by the master's loop through _enforce_deadlines() and
    _recycle()."""

    # The master's state these policies read and change.
    server: PreforkMixIn
    pid: int
    size: int
    generation: int
    paused: bool
    stop_mode: str | None
    reloading: object | None
    workers: dict[int, WorkerInfo]
    board: Scoreboard
    recycle_queue: deque[int]
    replacing: dict[int, int]
    restarts: dict[str, int]
    next_adapt: float
    next_memory_check: float

    # The master's verbs.
    def _try_spawn(self) -> WorkerInfo | None:
        raise NotImplementedError

    def _retire(self, info: WorkerInfo, sig: int = signal.SIGTERM) -> None:
        raise NotImplementedError

    def _signal_worker(self, info: WorkerInfo, sig: int) -> None:
        raise NotImplementedError

    def _current(self) -> list[WorkerInfo]:
        raise NotImplementedError

    def _title(self) -> None:
        raise NotImplementedError

    def _queue_recycle(self, info: WorkerInfo, reason: str, detail: str = "") -> None:
        if info.stopping or info.pid in self.recycle_queue or info.replacement:
            return
        log.info("worker %d (pid %d) due for recycling (%s)%s", info.age, info.pid, reason,
                 detail)
        info.recycle_reason = reason
        self.recycle_queue.append(info.pid)

    def _recycle(self) -> None:
        """Start replacements for queued workers, at most ``max_recycling`` at a time; retire
        each old worker once its replacement is ready."""
        for new_pid, old_pid in list(self.replacing.items()):
            new, old = self.workers.get(new_pid), self.workers.get(old_pid)
            if new is not None and new.ready:
                del self.replacing[new_pid]
                if old is not None and not old.stopping:
                    reason = old.recycle_reason or "recycle"
                    self.restarts[reason] = self.restarts.get(reason, 0) + 1
                    self._retire(old)
        if self.stop_mode is not None or self.reloading is not None:
            return
        while self.recycle_queue and len(self.replacing) < self.server.max_recycling:
            old = self.workers.get(self.recycle_queue.popleft())
            if old is None or old.stopping or old.generation != self.generation:
                continue
            new = self._try_spawn()  # the replacement first: capacity never drops
            if new is None:
                self.recycle_queue.appendleft(old.pid)
                break
            old.replacement = new.pid
            self.replacing[new.pid] = old.pid

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        timeout = self.server.request_timeout
        for info in list(self.workers.values()):
            if info.kill_at and now >= info.kill_at:
                info.kill_at = 0.0
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(info.pid, signal.SIGKILL)
            elif info.recycle_at and now >= info.recycle_at:
                info.recycle_at = 0.0
                self._queue_recycle(info, "max_age")
            elif timeout and info.ready and not info.kill_at:
                age = self.board.read(info.slot).request_age(now)
                if age is not None and age > timeout:
                    self._hung(info, age)
        if self._adaptive() and now >= self.next_adapt:
            self.next_adapt = now + ADAPT_INTERVAL
            self._adapt()
        if self.server.max_memory and now >= self.next_memory_check:
            self.next_memory_check = now + MEMORY_CHECK_INTERVAL
            for info in list(self.workers.values()):
                rss = worker_memory_mb(info.pid)
                if rss is not None and rss > self.server.max_memory and info.ready:
                    self._queue_recycle(info, "max_memory")

    def _adaptive(self) -> bool:
        return bool(self.server.min_spare or self.server.max_spare)

    def _adapt(self) -> None:
        """Grow the pool while fewer than ``min_spare`` workers are idle, shrink it while more
        than ``max_spare`` are, within [workers, max_children], one worker per look."""
        if self.stop_mode is not None or self.reloading is not None or self.paused:
            return
        current = self._current()
        if any(not w.ready for w in current) or self.replacing:
            return
        idle = [w for w in current if self.board.read(w.slot).state == State.IDLE]
        low, high = self.server.workers, self.server.max_children
        if self.server.min_spare and len(idle) < self.server.min_spare and self.size < high:
            self.size += 1
            log.info("master (pid %d) %d idle < min_spare %d: growing to %d", self.pid,
                     len(idle), self.server.min_spare, self.size)
            self._title()
        elif self.server.max_spare and len(idle) > self.server.max_spare and self.size > low:
            self.size -= 1
            youngest = max(idle, key=lambda w: w.age)
            log.info("master (pid %d) %d idle > max_spare %d: shrinking to %d", self.pid,
                     len(idle), self.server.max_spare, self.size)
            self._retire(youngest)
            self._title()

    def _hung(self, info: WorkerInfo, age: float) -> None:
        log.error(
            "worker %d (pid %d) request in flight for %.1f s (timeout %.1f s): dumping its "
            "stack, then killing it", info.age, info.pid, age, self.server.request_timeout,
        )
        self._signal_worker(info, signal.SIGUSR2)  # faulthandler in the worker
        info.kill_at = time.monotonic() + STACK_DUMP_GRACE
        info.stopping = True  # replaced at once, not counted as a crash
        self.restarts["timeout"] = self.restarts.get("timeout", 0) + 1
