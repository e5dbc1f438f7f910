"""The boot guard: a worker that dies before it reports ready is a boot failure, not a crash.

After a boot failure the next spawn waits a growing, jittered delay and the pool is refilled by
probing with one worker at a time, so a broken application causes no fork storm.  A worker that
reports ready ends the streak.  After ``limit`` failures in a row the verdict is a
:class:`BootError`: the master stops the pool and ``run()`` raises it.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable

log = logging.getLogger("prefork.master")

BACKOFF_BASE = 0.05  # seconds before the first retry after a boot failure
BACKOFF_MAX = 5.0


class BootError(RuntimeError):
    """The workers kept dying before they reported ready; the pool was stopped."""

    exit_status = 3


class BootGuard:
    """Counts boot failures in a row and owns the back-off deadline.

    Methods: failed(why, who, now) -> BootError | None, succeeded(), may_spawn(now),
    budget(missing, booting), deadline(now)."""

    def __init__(
        self,
        limit: int,
        give_up: Callable[[], None] = lambda: None,
        base: float = BACKOFF_BASE,
        cap: float = BACKOFF_MAX,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.limit = limit
        self.give_up = give_up  # called once the limit is reached (the master stops the pool)
        self.base, self.cap, self.jitter = base, cap, jitter
        self.failures = 0
        self.not_before = 0.0  # no spawn before this monotonic time
        self.error: BootError | None = None

    def succeeded(self) -> None:
        self.failures = 0

    def failed(self, why: str, who: str, now: float) -> BootError | None:
        """Count one failure; the :class:`BootError` once the limit is reached, else None."""
        self.failures += 1
        if self.failures >= self.limit:
            message = f"workers fail to boot: {self.failures} in a row, the last ({why}); stopping"
            log.error("master (pid %d) %s", os.getpid(), message)
            self.error = BootError(message)
            self.give_up()
            return self.error
        delay = min(self.cap, self.base * 2 ** (self.failures - 1)) * self.jitter(0.5, 1.5)
        self.not_before = now + delay
        log.warning("%s failed to boot: %s; retrying in %.2f s (%d/%d)",
                    who, why, delay, self.failures, self.limit)
        return None

    def may_spawn(self, now: float) -> bool:
        return now >= self.not_before

    def budget(self, missing: int, booting: int) -> int:
        """How many workers to fork now: all that are missing, or -- while failures are
        counted -- one probe at a time."""
        return min(missing, 1 - booting) if self.failures else missing

    def deadline(self, now: float) -> float | None:
        return self.not_before if self.not_before > now else None
