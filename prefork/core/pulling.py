"""A worker's loop for a server that is not a socket: socketserver's ``BaseServer`` whose
``get_request()`` returns anything ("read entries from a SQL database", socketserver's own
docstring), the job pool's shape.

Why a loop of its own.  The multiplexer (``mux.py``) waits on listening sockets and on
connections; such a server has neither.  Each worker calls ``get_request()`` itself, then runs
socketserver's request path on what it returned (``verify_request``, ``process_request``,
``shutdown_request``, ``handle_error``: ``dispatch.request_path``), with the same bookkeeping as a
connection (scoreboard, title, recycling).

How it waits.  A server that offers ``fileno()`` is waited on in the worker's epoll beside the
signal pipe and the master's alive pipe (level-triggered: readiness it does not consume wakes
it again), and ``get_request()`` is called when that fd is readable -- as socketserver's own
``serve_forever`` does.  A server without ``fileno()`` is called in a loop; ``get_request()``
may block, and raising ``OSError`` means "nothing this time" (socketserver's rule in
``_handle_request_noblock``).  A stop signal that arrives while it blocks raises
:class:`StopPulling` inside it, so the worker stops at once: such a ``get_request()`` must take
its request in one atomic step (a single ``UPDATE ... RETURNING``), since an exception raised
after that step returned is a request taken and not served (offer ``fileno()`` to avoid this).
"""

from __future__ import annotations

import select
import socketserver
from collections.abc import Callable

from prefork.core.dispatch import Serve
from prefork.ops.titles import WorkerTitle


class StopPulling(BaseException):
    """Raised inside a blocking ``get_request()`` by a stop signal (see the module's text)."""


def source_fd(server: socketserver.BaseServer) -> int | None:
    """The fd to wait on before calling ``server.get_request()``, if it offers one."""
    fileno = getattr(server, "fileno", None)
    if not callable(fileno):
        return None
    fd = fileno()
    return fd if isinstance(fd, int) and fd >= 0 else None


class Puller:
    """One worker's loop over ``server.get_request()``.  Methods: run(); ``pulling`` is True
    while a ``get_request()`` without ``fileno()`` runs (the signal handler reads it)."""

    def __init__(self, server: socketserver.BaseServer, ep: select.epoll, serve: Serve,
                 on_event: Callable[[int], None], stopping: Callable[[], bool],
                 service_timeout: float | None, title: WorkerTitle | None = None) -> None:
        self.server, self.ep, self.serve = server, ep, serve
        self.on_event, self.stopping = on_event, stopping
        self.service_timeout = service_timeout  # None: service_actions() is not overridden
        self.fd = source_fd(server)
        self.pulling = False
        self.title = title
        if title is not None:  # "busy" in the title: the server's words (the job pool: the job)
            title.busy = getattr(server, "busy_title", title.busy)

    def run(self) -> None:
        """Serve requests until ``stopping()``; a stop also ends a blocked ``get_request()``."""
        server, ep, fd = self.server, self.ep, self.fd
        timeout = -1.0 if self.service_timeout is None else self.service_timeout
        if fd is not None:
            ep.register(fd, select.EPOLLIN)
        while not self.stopping():
            # Without a source fd the wait only looks at the signals and the master.
            events = ep.poll(timeout if fd is not None else 0.0)
            readable = fd is None
            for event_fd, _ in events:
                if event_fd == fd:
                    readable = True
                else:
                    self.on_event(event_fd)
            if readable and not self.stopping():
                self._one()
            if self.service_timeout is not None:
                server.service_actions()

    def _one(self) -> None:
        """One ``get_request()`` and, if it gave a request, socketserver's path for it."""
        self.pulling = self.fd is None
        title = self.title
        try:
            request, address = self.server.get_request()
        except (OSError, StopPulling):
            # Nothing this time: the worker waits, and its title says so.
            if title is not None and title.state != "idle" and not self.stopping():
                title.show("idle")
            return
        finally:
            self.pulling = False
        # Each request shown as it begins, not rate-limited as a connection's request is (a
        # pulled request -- a table row -- costs far more than the prctl, and this loop's wait
        # has no time-out that would show a late change); "idle" once a get_request() found
        # nothing, not between two requests.
        if title is not None:
            title.show("busy")
        self.serve(request, address)

