"""The opt-in ``handle_urgent()`` hook: TCP urgent data noticed while a handler holds its
connection.

A handler class that defines ``handle_urgent(self)`` is told when urgent data arrives on its
connection (an FTP client's ``ABOR``, a telnet interrupt), while its ``handle()`` may be blocked
reading or writing.  Only such handlers pay for it; the others are served as before.

How.  The kernel sends SIGURG to a socket's owner when urgent data arrives (``F_SETOWN``).  The
handler's class is served as a subclass (:func:`watching`, the same class name) whose
``setup()`` makes this process the owner of the connection and notes the handler, and whose
``finish()`` lets go.  On SIGURG, every connection of this process with urgent data pending
(``poll`` reports ``POLLPRI`` while the urgent byte is unread) gets its handler's
``handle_urgent()``; when none has (the handler read the byte before the signal was handled),
each handler holding a connection here is told -- the one of its process in a worker or a
forked child, but with handler threads possibly one whose connection had none.  Urgent data
already there at ``setup()`` is reported at its end.  The byte
itself stays where it was sent in the stream (``SO_OOBINLINE``, the pool's default, RFC 6093's
advice: see :mod:`prefork.core.urgent`); :func:`prefork.at_mark` says when a read reached it.

Where it runs.  Python runs signal handlers in the main thread, between two bytecodes: in a
prefork worker (one thread) and in a ForkingMixIn child that is in the handler itself -- its
blocking ``recv``/``send`` is interrupted, ``handle_urgent()`` runs, and the call resumes (PEP
475), or an exception ``handle_urgent()`` raises comes out of it (a way to abort a transfer).
With handler threads (``--threads``, ``--mode thread``, and ``--mode sync``, whose server runs
in a thread beside the main one) it runs in the main thread, beside the handler's: keep it to
setting a flag the handler looks at.  RFC 6093: urgent data is a legacy mechanism; new
protocols should not use it.

While a connection waits in the pool's multiplexer (before its handler, see core/mux.py) it is
registered for ``EPOLLPRI`` too when its handler defines the hook, so a lone urgent byte --
which is not readable data when ``oob_inline = False`` -- still brings it to its handler.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import select
import signal
import threading
from typing import Any

from prefork.core.keepalive import handler_class, replace_class
from prefork.core.urgent import is_tcp

_HOLDERS: dict[int, Any] = {}  # fd -> the handler holding it in this process


def wants_urgent(factory: Any) -> bool:
    """True if the handler ``factory`` builds defines ``handle_urgent()``."""
    cls = handler_class(factory)
    return cls is not None and callable(getattr(cls, "handle_urgent", None))


def install() -> bool:
    """Route SIGURG to the handlers (in the main thread; a forked child keeps it).  False
    when it cannot be installed here (not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGURG, _on_sigurg)
    return True


def watching(factory: Any) -> Any:
    """``factory`` serving through :class:`UrgentWatched` if its handler defines the hook;
    else ``factory`` itself (a partial's class is replaced inside the partial)."""
    if isinstance(factory, functools.partial):
        return replace_class(factory, watching)
    cls = handler_class(factory)
    if cls is None or not wants_urgent(cls) or issubclass(cls, UrgentWatched):
        return factory
    return type(cls.__name__, (UrgentWatched, cls),
                {"__module__": cls.__module__, "__qualname__": cls.__qualname__})


def watch_servers(servers: Any) -> None:
    """Serve each of ``servers`` through :func:`watching` of its handler, SIGURG installed."""
    for server in servers:
        factory = getattr(server, "RequestHandlerClass", None)
        if factory is not None and wants_urgent(factory):
            install()
            server.RequestHandlerClass = watching(factory)


class UrgentWatched:
    """The connection's SIGURG comes to this process from ``setup()`` to ``finish()``."""

    request: Any

    def setup(self) -> None:
        super().setup()  # type: ignore[misc]
        sock = self.request
        if not is_tcp(sock) or signal.getsignal(signal.SIGURG) is not _on_sigurg:
            return
        fd = sock.fileno()
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
            _HOLDERS[fd] = self
            if _urgent_pending(fd):  # arrived before: no SIGURG was sent to anyone
                self.handle_urgent()  # type: ignore[attr-defined]

    def finish(self) -> None:
        try:
            super().finish()  # type: ignore[misc]
        finally:
            sock = self.request
            fd = sock.fileno() if is_tcp(sock) else -1
            if _HOLDERS.get(fd) is self:
                del _HOLDERS[fd]


def _urgent_pending(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLPRI)
    return any(events & select.POLLPRI for _, events in poller.poll(0))


def _on_sigurg(signum: int, frame: Any) -> None:
    holders = list(_HOLDERS.items())
    told = [handler for fd, handler in holders if _urgent_pending(fd)]
    if not told:  # the byte was read before this ran: the holder(s) it can have been for
        told = [handler for _, handler in holders]
    for handler in told:
        handler.handle_urgent()
