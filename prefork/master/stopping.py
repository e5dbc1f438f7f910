"""The stop: graceful (TERM: requests in flight finish) or quick (INT, QUIT: workers leave now),
each with its own deadline after which the rest are killed.  A quick stop may overtake a
graceful one, never the reverse; a second interrupt kills at once.
"""

from __future__ import annotations

import enum
import logging
import os
import signal

from prefork.core.contract import PoolServer

log = logging.getLogger("prefork.master")


class StopMode(enum.Enum):
    GRACEFUL = "graceful"
    QUICK = "quick"

    @property
    def worker_signal(self) -> int:
        return signal.SIGTERM if self is StopMode.GRACEFUL else signal.SIGQUIT


class Stop:
    """Owns the stop's mode and deadline.  ``request()`` returns the signal to send every
    worker now (or None); ``over(now, workers_left)`` says when the loop may end."""

    def __init__(self, server: PoolServer) -> None:
        self.server = server  # its timeouts are read when a stop begins: a reload may change them
        self.mode: StopMode | None = None
        self.deadline_at = 0.0
        self.kill_now = False  # a second interrupt: do not wait for the deadline

    @property
    def requested(self) -> bool:
        return self.mode is not None

    def request(self, mode: StopMode, now: float, escalate: bool = False) -> int | None:
        if self.mode is None:
            self.mode = mode
            graceful = mode is StopMode.GRACEFUL
            timeout = self.server.graceful_timeout if graceful else self.server.quick_timeout
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
