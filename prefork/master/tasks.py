"""The server's own work in the master's loop: ``PoolServer.master_fds()`` registered in the
selector (kept in step with what the server offers each turn) and ``master_actions(now)``
called every turn, its deadline joining the loop's.  The job pool watches its table here."""

from __future__ import annotations

import logging
import selectors
from collections.abc import Callable

from prefork.core.contract import PoolServer

log = logging.getLogger("prefork.master")


class ServerTasks:
    """Methods: turn(now) (after the reaps), deadline(), close()."""

    def __init__(self, server: PoolServer, selector: selectors.BaseSelector) -> None:
        self.server, self.selector = server, selector
        self.fds: dict[int, Callable[[], None]] = {}
        self.next_at: float | None = None

    def turn(self, now: float) -> None:
        try:
            self.next_at = self.server.master_actions(now)
            self._sync(self.server.master_fds())
        except Exception:
            log.exception("the server's master_actions() failed")
            self.next_at = now + 1.0

    def deadline(self) -> float | None:
        return self.next_at

    def _sync(self, wanted: dict[int, Callable[[], None]]) -> None:
        for fd in [fd for fd in self.fds if wanted.get(fd) is not self.fds[fd]]:
            self.selector.unregister(fd)
            del self.fds[fd]
        for fd, callback in wanted.items():
            if fd not in self.fds:
                self.selector.register(fd, selectors.EVENT_READ, _call(callback))
                self.fds[fd] = callback

    def close(self) -> None:
        self._sync({})


def _call(callback: Callable[[], None]) -> Callable[[int], None]:
    def on_event(_mask: int) -> None:
        try:
            callback()
        except Exception:
            log.exception("the server's master fd callback failed")
    return on_event
