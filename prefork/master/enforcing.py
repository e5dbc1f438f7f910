"""Carrying out the policies' verdicts on single workers (prefork.master.policies decides):
SIGKILL after a stack-dump grace, the stack dump itself, recycling.  Resizing the pool is the
master's own business and is handed back to it.

Every kill says why in one line before it happens, with the pid: a request over ``--timeout``,
a request running away with memory, or a worker that is stopped (SIGSTOP) and so cannot dump
its stack -- the line says that no dump will come rather than leave the operator waiting for
one.
"""

from __future__ import annotations

import logging
from collections import Counter

from prefork.core.contract import PoolServer, grace
from prefork.core.memguard import memory_limit
from prefork.master.policies import (
    KILLED,
    MEMORY,
    RUNAWAY_FACTOR,
    RUNAWAY_GRACE,
    Action,
    DumpStack,
    Kill,
    Recycle,
    Resize,
    request_limit,
)
from prefork.master.pool import Pool
from prefork.master.recycling import Recycler

log = logging.getLogger("prefork.master")


class Enforcer:
    """Methods: apply(action) -> the Resize for the master, or None."""

    def __init__(
        self, server: PoolServer, pool: Pool, recycler: Recycler, restarts: Counter[str],
    ) -> None:
        self.server = server
        self.pool = pool
        self.recycler = recycler
        self.restarts = restarts  # reason -> count, for status and metrics

    def apply(self, action: Action) -> Resize | None:
        if isinstance(action, Kill):
            if action.boot_waited:
                log.error("worker %d (pid %d) not ready after %.1f s (boot_timeout): killing "
                          "it", action.worker.age, action.worker.pid, action.boot_waited)
            if action.retired:
                log.warning("worker %d (pid %d) still serving %.1f s after it was retired "
                            "(graceful_timeout): killing it", action.worker.age,
                            action.worker.pid, grace(self.server))
            action.worker.kill_at = KILLED
            self.pool.kill_group(action.worker)
        elif isinstance(action, Recycle):
            if action.once:
                action.worker.recycle_at = 0.0  # due once
            self.recycler.due(action.worker, action.reason)
        elif isinstance(action, DumpStack):
            self._stop_request(action)
        else:
            return action
        return None

    def _stop_request(self, action: DumpStack) -> None:
        info = action.worker
        if action.rss_mb is None:
            reason = "timeout"
            why = (f"request in flight for {action.request_age:.1f} s "
                   f"(timeout {request_limit(self.server):.1f} s)")
        else:
            reason, limit = MEMORY, memory_limit(self.server)
            margin = (f"over {RUNAWAY_FACTOR:g}x max_memory ({limit} MB)"
                      if action.rss_mb > limit * RUNAWAY_FACTOR else
                      f"over max_memory ({limit} MB) for {RUNAWAY_GRACE:g} s")
            why = (f"request in flight for {action.request_age:.1f} s at "
                   f"{action.rss_mb:.0f} MB, {margin}")
        self.restarts[reason] += 1
        if action.stopped:
            log.error("worker %d (pid %d) %s, and it is stopped (SIGSTOP?): no stack dump can "
                      "come; killing it", info.age, info.pid, why)
            info.stopping, info.kill_at = True, KILLED
            self.pool.kill_group(info)
        else:
            log.error("worker %d (pid %d) %s: dumping its stack, then killing it", info.age,
                      info.pid, why)
            self.pool.dump_then_kill(info, action.kill_at)
