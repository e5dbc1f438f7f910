"""The stop: graceful (TERM: requests in flight finish) or quick (INT, QUIT: workers leave now),
each with its own deadline after which the rest are killed.  A quick stop may overtake a
graceful one, never the reverse; a second interrupt kills at once.
"""

from __future__ import annotations

import enum
import logging
import os
import signal

from prefork.core.contract import PoolServer, grace
from prefork.master.pool import Pool

log = logging.getLogger("prefork.master")


class StopMode(enum.Enum):
    GRACEFUL = "graceful"
    QUICK = "quick"

    @property
    def worker_signal(self) -> int:
        return signal.SIGTERM if self is StopMode.GRACEFUL else signal.SIGQUIT


class Stop:
    """Owns the stop's mode and deadline.  ``request()`` begins or hastens the stop and tells
    the workers; ``over(now, workers_left)`` says when the loop may end."""

    def __init__(self, server: PoolServer, pool: Pool) -> None:
        self.server = server  # its timeouts are read when a stop begins: a reload may change them
        self.pool = pool
        self.mode: StopMode | None = None
        self.deadline_at = 0.0
        self.kill_now = False  # a second interrupt: do not wait for the deadline

    @property
    def requested(self) -> bool:
        return self.mode is not None

    def request(
        self, mode: StopMode, now: float, escalate: bool = False, close: bool = False
    ) -> bool:
        """Begin (True) or hasten a stop.  ``escalate``: a second quick stop kills at once;
        ``close``: a stop signal, which ends the process -- stop taking connections now, so
        clients fail fast instead of queueing behind the drain (each worker closes its copies
        once it has served what was queued: core/handover.py; ``shutdown()`` leaves closing to
        ``server_close()``)."""
        if close:
            for server in self.server.listening_servers():
                server.socket.close()
        first = self.mode is None
        sig = self._escalate(mode, now, escalate)
        if sig is not None:
            self.pool.signal_all(sig)
        return first

    def _escalate(self, mode: StopMode, now: float, escalate: bool) -> int | None:
        if self.mode is None:
            self.mode = mode
            graceful = mode is StopMode.GRACEFUL
            timeout = grace(self.server) if graceful else self.server.quick_timeout
            self.deadline_at = now + timeout
            log.info("master (pid %d) %s stop", os.getpid(), mode.value)
            return mode.worker_signal
        if mode is StopMode.QUICK and self.mode is StopMode.GRACEFUL:
            self.mode = StopMode.QUICK
            self.deadline_at = min(self.deadline_at, now + self.server.quick_timeout)
            return mode.worker_signal
        if mode is StopMode.QUICK and escalate:
            log.info("master (pid %d) second interrupt: killing the workers", os.getpid())
            self.kill_now = True
        return None

    def deadline(self) -> float | None:
        return self.deadline_at if self.mode is not None else None

    def over(self, now: float, workers_left: int) -> bool:
        return self.mode is not None and (
            not workers_left or self.kill_now or now >= self.deadline_at
        )
