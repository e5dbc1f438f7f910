"""The boot guard: a worker that dies before it reports ready is a boot failure, not a crash.

After a boot failure the next spawn waits a growing, jittered delay and the pool is refilled by
probing with one worker at a time, so a broken application causes no fork storm.  A worker that
dies by itself within :data:`CRASH_WINDOW` of reporting ready, outside a request (an application
that crashes as soon as it is up, a thread of its own that kills the process), counts the same
way: otherwise each ready report would end the streak and the pool would fork without end.  A
death inside a request (a client's request may cause it, and no client may stop the server) or
by a KILL or TERM from outside stays a crash, replaced at once.  So a ready report ends the
streak only once :data:`CRASH_WINDOW` has passed without a failure (:meth:`BootGuard.ready`).
After ``limit`` failures in a row the verdict is a :class:`BootError`: the master stops the pool
and ``run()`` raises it (exit status 3 from the command).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable

log = logging.getLogger("prefork.master")

BACKOFF_BASE = 0.05  # seconds before the first retry after a boot failure
BACKOFF_MAX = 5.0
CRASH_WINDOW = 2.0  # seconds after its ready report in which a worker's death is a boot failure


class BootError(RuntimeError):
    """The workers kept dying before they reported ready; the pool was stopped."""

    exit_status = 3


class BootGuard:
    """Counts boot failures in a row and owns the back-off deadline.

    Methods: failed(why, who, now) -> BootError | None, ready(now), succeeded(),
    may_spawn(now), budget(missing, booting), deadline(now)."""

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
        self.settle_at = 0.0  # the streak ends at this monotonic time unless a failure comes
        self.error: BootError | None = None

    def succeeded(self) -> None:
        self.failures = 0
        self.settle_at = 0.0

    def ready(self, now: float, window: float = CRASH_WINDOW) -> None:
        """A worker reported ready: the streak ends once ``window`` passed without a failure."""
        if self.failures:
            self.settle_at = now + window

    def settle(self, now: float) -> None:
        if self.settle_at and now >= self.settle_at:
            self.succeeded()

    def failed(self, why: str, who: str, now: float,
               after_ready: float | None = None) -> BootError | None:
        """Count one failure; the :class:`BootError` once the limit is reached, else None."""
        self.settle(now)
        self.settle_at = 0.0
        self.failures += 1
        if self.failures >= self.limit:
            last = why if after_ready is None else f"{why}, {after_ready:.2f} s after ready"
            message = (f"workers fail to boot: {self.failures} in a row, the last ({last}); "
                       "stopping")
            log.error("master (pid %d) %s", os.getpid(), message)
            self.error = BootError(message)
            self.give_up()
            return self.error
        delay = min(self.cap, self.base * 2 ** (self.failures - 1)) * self.jitter(0.5, 1.5)
        self.not_before = now + delay
        if after_ready is None:
            log.warning("%s failed to boot: %s; retrying in %.2f s (%d/%d)",
                        who, why, delay, self.failures, self.limit)
        else:
            log.warning("%s died: %s; replacing it in %.2f s (%.2f s after it reported ready: "
                        "a crash loop, %d/%d)", who, why, delay, after_ready, self.failures,
                        self.limit)
        return None

    def may_spawn(self, now: float) -> bool:
        self.settle(now)
        return now >= self.not_before

    def budget(self, missing: int, booting: int) -> int:
        """How many workers to fork now: all that are missing, or -- while failures are
        counted -- one probe at a time."""
        return min(missing, 1 - booting) if self.failures else missing

    def deadline(self, now: float) -> float | None:
        due = [t for t in (self.not_before, self.settle_at) if t > now]
        return min(due) if due else None
