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
them.  While the master keeps its copy (a reload's retiring worker, WINCH) nothing changes for
clients: the next generation accepts.  Datagram listeners are left as they are (a datagram
queued on the shared socket is not a connection to reset).
"""

from __future__ import annotations

import select
import socket
import socketserver
from collections.abc import Callable, Sized
from typing import Protocol

from prefork.core.errnos import unregister


class Bounded(Protocol):
    @property
    def worker_connections(self) -> int: ...


def take_backlog(ep: select.epoll, listeners: dict[int, socketserver.BaseServer],
                 accept: Callable[[int], None], conns: Sized, limits: Bounded) -> None:
    """Accept (``accept(fd)``) what is queued on each stream listener while fewer than
    ``limits.worker_connections`` wait in ``conns``, then unregister and close this process's copy
    and drop it from ``listeners``.  (Called by the multiplexer's drain.)"""
    for fd, server in list(listeners.items()):
        sock = server.socket  # type: ignore[attr-defined]
        if sock.type != socket.SOCK_STREAM:
            continue
        poll = select.poll()
        poll.register(fd, select.POLLIN)
        for _ in range(limits.worker_connections):  # (new arrivals cannot keep it here)
            if len(conns) >= limits.worker_connections or not poll.poll(0):
                break
            accept(fd)
        unregister(ep, fd)
        del listeners[fd]
        sock.close()
