"""What the master offers operators besides signals: the pid file, the control socket and the
metrics endpoint, each served from the master's own loop (see prefork.ops.endpoint: no client
can hold the loop up).

The new master of an upgrade claims the pid file and the control socket only once its pool is
ready (:meth:`Operations.take_over`); if it fails before, the old master keeps both.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
from collections.abc import Callable
from typing import Any, Protocol

from prefork.core.contract import PoolServer
from prefork.ops import pidfile
from prefork.ops.control import ControlServer, PendingReply
from prefork.ops.metrics import MetricsServer

log = logging.getLogger("prefork.master")

Status = Callable[[], dict[str, Any]]
Command = Callable[[dict[str, Any]], "dict[str, Any] | PendingReply"]


class Endpoint(Protocol):
    """A server the master's loop drives."""

    def register(self, selector: selectors.BaseSelector) -> None: ...

    def deadline(self) -> float | None: ...

    def expire(self, now: float) -> None: ...

    def close(self) -> None: ...


class Operations:
    """The master's endpoints and pid file, and the server's announce()/withdraw().  Methods:
    take_over(replacing), open_metrics(), deadline(), expire(now), close(handed_off)."""

    def __init__(
        self, server: PoolServer, selector: selectors.BaseSelector, status: Status,
        command: Command,
    ) -> None:
        self.server = server
        self.selector = selector
        self.status = status
        self.command = command
        self.endpoints: list[Endpoint] = []
        self.announced = False  # server.announce() ran: withdraw() at close

    def take_over(self, replacing: bool) -> None:
        """Claim the pid file and the control socket (``replacing``: from the old master of an
        upgrade, whose socket file is removed first -- it will not remove ours: inode check); then
        the server announces its listeners (``PoolServer.announce``)."""
        pidfile.write_for(self.server)
        if self.server.control:
            if replacing:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.server.control)
            self._add(ControlServer(self.server.control, self.command))
        self._hook("announce", self.server.announce)
        self.announced = True

    def _hook(self, name: str, hook: Callable[[], None]) -> None:
        try:
            hook()
        except Exception:
            log.exception("master (pid %d) %s() failed", os.getpid(), name)

    def open_metrics(self) -> None:
        address = self.server.metrics
        if not address:
            return
        try:
            metrics = MetricsServer(address, self.status, self.server)
        except OSError as exc:
            raise OSError(exc.errno, f"metrics {address}: {exc.strerror or exc}") from None
        self._add(metrics)
        log.info("master (pid %d) metrics on http://%s:%d/metrics", os.getpid(),
                 *metrics.address[:2])

    def _add(self, endpoint: Endpoint) -> None:
        self.endpoints.append(endpoint)
        endpoint.register(self.selector)

    def deadline(self) -> float | None:
        deadlines = [d for d in (e.deadline() for e in self.endpoints) if d is not None]
        return min(deadlines) if deadlines else None

    def expire(self, now: float) -> None:
        for endpoint in self.endpoints:
            endpoint.expire(now)

    def close(self, handed_off: bool = False) -> None:
        """Close the endpoints, remove the pid file; withdraw() unless ``handed_off`` (to the
        new master of an upgrade)."""
        if self.announced and not handed_off:
            self._hook("withdraw", self.server.withdraw)
        self.announced = False
        for endpoint in self.endpoints:
            endpoint.close()
        self.endpoints.clear()
        pidfile.remove_for(self.server)
