"""A graceful stop that resets nobody: what the kernel queued is served, then the listener goes.

Each worker holds its own copy of the listening sockets, and the kernel keeps a listener (and
goes on queueing connections on it) until the last copy closes; a connection still queued then
is reset.  Measured before this (2 busy workers of ``tests.apps.slow_http``, 10 connections
queued behind them, TERM): 10 of 10 queued connections reset, and a connection attempt during
the drain queued for 0.27 s, then was reset.  So a draining worker first accepts what is queued
on its stream listeners (each connection served like any other: the client sent it before the
stop), then closes its copies: once every worker has done so (and the master closed its own at
TERM), a new connection attempt is refused at once.  A worker that is in a handler when the
stop begins does this when its request ends: until then new connections queue, and it serves
them.  Under a load that reconnects at once, the sweep must not serve as it goes (see
:func:`take_backlog`): measured with 32 clients making a connection per request, a sweep that
served inline kept the stop going for as long as the load lasted (3-5 s, until the clients
stopped).  While the master keeps its copy (a reload's retiring worker, WINCH) nothing changes for
clients: the next generation accepts.  Datagram listeners are left as they are (a datagram
queued on the shared socket is not a connection to reset).
"""

from __future__ import annotations

import select
import socket
import socketserver
from collections.abc import Callable, Sized
from typing import Any, Protocol

from prefork.core.errnos import unregister


class Bounded(Protocol):
    @property
    def most_waiting(self) -> int: ...


def take_backlog(ep: select.epoll, listeners: dict[int, socketserver.BaseServer],
                 take: Callable[[int], tuple[Any, Any] | None],
                 admit: Callable[[int, Any, Any], None], conns: Sized,
                 limits: Bounded) -> None:
    """Take (``take(fd)``, a bare accept) what is queued on each stream listener while fewer
    than ``limits.worker_connections`` would wait in ``conns``, then unregister and close this
    process's copy and drop it from ``listeners``, and only then ``admit`` what was taken (a
    request may be served at once).  The order matters under load: a client answered during
    the sweep (with "close") reconnects at once, so a sweep that served as it went would never
    end, or, bounded, would leave those reconnections queued to be reset when the last copy
    closes; a sweep of bare accepts takes microseconds, and only what arrives within them can
    be lost.  (Called by the multiplexer's drain.)"""
    for fd, server in list(listeners.items()):
        sock = server.socket  # type: ignore[attr-defined]
        if sock.type != socket.SOCK_STREAM:
            continue
        taken: list[tuple[Any, Any]] = []
        while len(conns) + len(taken) < limits.most_waiting:
            got = take(fd)
            if got is None:
                break
            taken.append(got)
        unregister(ep, fd)
        sock.close()
        for request, address in taken:
            admit(fd, request, address)  # (which looks the server up in ``listeners``)
        del listeners[fd]
