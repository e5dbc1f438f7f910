"""Recycling: replace a worker that is due (max_requests, max_age, max_memory) without losing
capacity -- its replacement is started first, and the old worker retires only once the
replacement reported ready -- with at most ``max_recycling`` replacements booting at a time.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from prefork.core.contract import WorkerInfo
from prefork.master.pool import Pool

log = logging.getLogger("prefork.master")


class Recycler:
    """The queue of workers due for recycling and the replacements in flight.

    ``replacing`` maps a replacement's pid to the pid it replaces; it is the only record of
    that link.  Methods: due(info, reason), forget(pid), finish(), start(spawn, generation)."""

    def __init__(self, pool: Pool, count: Callable[[str], None]) -> None:
        self.pool = pool
        self.count = count  # counts a finished replacement by reason (status, metrics)
        self.queue: deque[int] = deque()  # pids due, in order
        self.reasons: dict[int, str] = {}  # pid -> why it is due
        self.replacing: dict[int, int] = {}  # replacement pid -> pid it replaces

    def due(self, info: WorkerInfo, reason: str, detail: str = "") -> None:
        """Queue ``info`` for replacement, unless it is leaving or already queued/replaced."""
        if info.stopping or info.pid in self.reasons:
            return
        log.info("worker %d (pid %d) due for recycling (%s)%s", info.age, info.pid, reason,
                 detail)
        self.reasons[info.pid] = reason
        self.queue.append(info.pid)

    def forget(self, pid: int) -> None:
        """A worker left the pool.  If it was a replacement, the one it replaced is due again."""
        if pid in self.queue:
            self.queue.remove(pid)
        self.reasons.pop(pid, None)
        replaced = self.replacing.pop(pid, None)
        if replaced is not None and replaced in self.pool.workers:
            self.queue.appendleft(replaced)

    def finish(self) -> None:
        """Retire each worker whose replacement is ready."""
        for new_pid, old_pid in list(self.replacing.items()):
            new, old = self.pool.workers.get(new_pid), self.pool.workers.get(old_pid)
            if new is not None and new.ready:
                del self.replacing[new_pid]
                reason = self.reasons.pop(old_pid, "recycle")
                if old is not None and not old.stopping:
                    self.count(reason)
                    self.pool.retire(old)

    def start(self, spawn: Callable[[], WorkerInfo | None], generation: int, limit: int) -> None:
        """Start replacements for queued workers of ``generation``, up to ``limit`` at once."""
        while self.queue and len(self.replacing) < limit:
            pid = self.queue.popleft()
            old = self.pool.workers.get(pid)
            if old is None or old.stopping or old.generation != generation:
                self.reasons.pop(pid, None)
                continue
            new = spawn()  # the replacement first: capacity never drops
            if new is None:
                self.queue.appendleft(pid)
                break
            self.replacing[new.pid] = pid

    def booting(self) -> bool:
        return bool(self.replacing)
