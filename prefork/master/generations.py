"""Generations: a reload (HUP) starts a complete new generation next to the old one and
retires the old one only when every new worker has reported ready; if a new worker fails to
boot, the new generation is stopped, the server's preparation is rolled back and the old one
keeps serving.  The listening sockets never close, so connections in the backlog are served by
whichever generation accepts them.  A reload asked for while one runs is queued, not lost.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass

from prefork.core.contract import PoolServer, ReloadRefused
from prefork.master.pool import Pool

log = logging.getLogger("prefork.master")


@dataclass
class Reload:
    """A reload in progress: the generation it replaces and how to undo the preparation."""

    old_generation: int
    rollback: Callable[[], None]


class Generations:
    """The current generation number and the reload in progress, if any.

    Methods: begin() -> bool, ready(size) -> bool, finish(), abort(info, why), cancel()."""

    def __init__(
        self, server: PoolServer, pool: Pool, replaced: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.server = server
        self.pool = pool
        self.replaced = replaced  # counts the old workers a finished reload retired
        self.number = 1
        self.reload: Reload | None = None
        self.queued = False  # a HUP arrived while a reload was running
        self.refusal = ""  # why the last begin() was refused by the server, one line

    @property
    def reloading(self) -> bool:
        return self.reload is not None

    def begin(self) -> bool:
        """Prepare the server and start counting a new generation; False if the server
        refused (the reason is logged) or a reload is already running (then it is queued)."""
        if self.reload is not None:
            self.queued = True
            log.info("master (pid %d) reload queued behind generation %d", os.getpid(),
                     self.number)
            return False
        try:
            rollback = self.server.prepare_reload()
        except ReloadRefused as exc:
            log.error("master (pid %d) reload refused: %s; generation %d keeps serving",
                      os.getpid(), exc, self.number)
            self.refusal = str(exc)
            return False
        except Exception as exc:
            log.exception("master (pid %d) reload failed; generation %d keeps serving",
                          os.getpid(), self.number)
            self.refusal = f"{type(exc).__name__}: {exc}"
            return False
        self.reload = Reload(self.number, rollback)
        self.number += 1
        log.info("master (pid %d) reload: starting generation %d", os.getpid(), self.number)
        return True

    def ready(self, size: int) -> bool:
        """Whether the newest generation has ``size`` workers, all ready."""
        current = self.pool.current(self.number)
        return len(current) >= size and all(w.ready for w in current)

    def finish(self) -> bool:
        """Retire every older worker; True if another reload was queued meanwhile."""
        assert self.reload is not None
        retired = 0
        for info in list(self.pool.workers.values()):
            if info.generation < self.number and not info.stopping:
                self.pool.retire(info)
                retired += 1
        if retired:
            self.replaced(retired)
        log.info("master (pid %d) generation %d ready; generation %d retiring", os.getpid(),
                 self.number, self.reload.old_generation)
        self.reload = None
        return self._take_queued()

    def abort(self, who: str, why: str) -> bool:
        """A worker of the new generation failed to boot (``who``: "worker 3, pid 12", or "a
        new worker" that could not even be forked): stop that generation, roll back and keep
        the old one.  True if another reload was queued meanwhile (perhaps with the fix)."""
        assert self.reload is not None
        old = self.reload.old_generation
        log.error(
            "master (pid %d) generation %d failed to boot (%s: %s); generation %d keeps serving",
            os.getpid(), self.number, who, why, old,
        )
        for other in list(self.pool.workers.values()):
            if other.generation == self.number:
                # A ready one may have been woken for a connection: it serves that, then exits.
                self.pool.retire(other, signal.SIGTERM if other.ready else signal.SIGQUIT)
        try:
            self.reload.rollback()
        except Exception:
            log.exception("master (pid %d) reload rollback failed", os.getpid())
        self.number, self.reload = old, None
        return self._take_queued()

    def cancel(self) -> None:
        """Forget a reload in progress (WINCH): resuming starts workers of the newest
        generation."""
        self.reload, self.queued = None, False

    def _take_queued(self) -> bool:
        queued, self.queued = self.queued, False
        return queued
