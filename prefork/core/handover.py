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
stopped).  Before it closes, a worker also takes what the kernel holds outside the queue
(handshakes not complete, clients deferred by ``TCP_DEFER_ACCEPT``: :func:`_take_held`), for
a short bounded wait.  While the master keeps its copy (a reload's retiring worker, WINCH)
nothing changes for clients: the next generation accepts.  Datagram listeners are left as they
are (a datagram queued on the shared socket is not a connection to reset).
"""

from __future__ import annotations

import functools
import select
import socket
import socketserver
import time
from collections.abc import Callable, Sized
from typing import Any, Protocol

from prefork.core.errnos import unregister
from prefork.core.handshakes import pending

# The longest a draining worker waits for held connections (see _take_held) before it closes.
HELD_WAIT = 0.1


class Bounded(Protocol):
    @property
    def most_waiting(self) -> int: ...


def take_backlog(ep: select.epoll, listeners: dict[int, socketserver.BaseServer],
                 take: Callable[[int], tuple[Any, Any] | None],
                 admit: Callable[[int, Any, Any], None], conns: Sized,
                 limits: Bounded) -> None:
    """Take (``take(fd)``, a bare accept) what is queued on each stream listener while fewer
    than ``limits.most_waiting`` would wait in ``conns``, and what the kernel still holds
    outside the queue (:func:`_take_held`), then unregister and close this process's copy and
    drop it from ``listeners``, and only then ``admit`` what was taken (a request may be served
    at once).  The order matters under load: a client answered during the sweep (with "close")
    reconnects at once, so a sweep that served as it went would never end, or, bounded, would
    leave those reconnections queued to be reset when the last copy closes; a sweep of bare
    accepts takes microseconds, and only what arrives within them can be lost.  (Called by the
    multiplexer's drain.)"""
    until = time.monotonic() + HELD_WAIT
    for fd, server in list(listeners.items()):
        sock = server.socket  # type: ignore[attr-defined]
        if sock.type != socket.SOCK_STREAM:
            continue
        taken: list[tuple[Any, Any]] = []
        sweep = functools.partial(_sweep, functools.partial(take, fd), taken,
                                  limits.most_waiting - len(conns))
        if sweep():
            _take_held(sock, sweep, until)
        unregister(ep, fd)
        sock.close()
        for request, address in taken:
            admit(fd, request, address)  # (which looks the server up in ``listeners``)
        del listeners[fd]


def _sweep(take: Callable[[], tuple[Any, Any] | None], taken: list[tuple[Any, Any]],
           room: int) -> bool:
    """Accept what is queued into ``taken`` (``room`` at most); False once it is full."""
    while len(taken) < room:
        got = take()
        if got is None:
            return True
        taken.append(got)
    return False


def _take_held(sock: socket.socket, sweep: Callable[[], bool], until: float) -> None:
    """Wait, until ``until`` at most, for the connections the kernel holds for ``sock``
    outside its accept queue (core/handshakes.py: a handshake not complete, or a client
    deferred by ``TCP_DEFER_ACCEPT`` whose first bytes have not come), taking each as it
    arrives (``sweep``), until none is held.  Closing the last copy of the listener drops them,
    and each client's next segment meets a reset.  Measured (2 workers, 16 threads each
    making a connection per request, TERM): resets in 17 runs of 40 (1 to 6 connections each)
    without this wait, in 3 of 40 (1 each) with TCP_DEFER_ACCEPT off instead, in 2 of 40 (1
    each) with it.  (What is left: a connection that comes between the last sweep and the
    close, while another worker's answered clients reconnect.)  The wait ends as soon as none
    is held (at once when idle, or once a load that waits for answers has all its connections
    taken); ``until`` bounds it for a client that connects and says nothing, or an open load
    that never pauses.  Where the kernel cannot be asked (handshakes.pending: None), no wait."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    while pending(sock):
        left = until - time.monotonic()
        if left <= 0:
            break
        poller.poll(left * 1000)  # a held connection arriving makes the listener readable
        if not sweep():
            return
    sweep()  # what arrived between the last sweep and the count
