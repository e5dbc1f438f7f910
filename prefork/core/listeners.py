"""The accepting side of the worker's multiplexer: its listeners, and what an event on one does.

:class:`Listening` is the base of :class:`~prefork.core.mux.Multiplexer`: it owns the listeners
(fd -> server, registered ``EPOLLEXCLUSIVE`` by the worker), what accepting from each costs
(``accept_function``, the handler's :class:`~prefork.core.keepalive.Ready` mode, the function
serving a new connection without a :class:`Conn`), and whether this worker accepts at all now
(``worker_connections`` reached, resource pressure after ``EMFILE``, a graceful stop).  Why the
common path looks the way it does is in ``mux.py``'s docstring; what happens to a connection
once it is accepted (waiting, to the handler and back) is the multiplexer's, through the hooks
below, which it provides.
"""

from __future__ import annotations

import select
import socket
import socketserver
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from prefork.core import waits
from prefork.core.accepting import (
    PEEK,
    accept_function,
    head_arrived,
    keeps_std_fds,
    tune_listener,
)
from prefork.core.conn import Conn, Deadlines
from prefork.core.errnos import AcceptFailures, expect_peer_gone, unregister
from prefork.core.httplimits import MAX_HEAD
from prefork.core.keepalive import Ready, Resumable, ready_when
from prefork.core.proxyproto import proxied
from prefork.core.stdfds import ensure_open

ACCEPT_BURST = 16  # datagrams taken per wake-up before looking at the rest of the loop
LISTEN_EVENTS = select.EPOLLIN | getattr(select, "EPOLLEXCLUSIVE", 0)
# On every connection's path: an enum member read from the class costs its metaclass's
# __getattr__ hook in 3.11 (about 60 ns each).
_DATA, _ACCEPTED = Ready.DATA, Ready.ACCEPTED


@dataclass(frozen=True)
class Limits:
    head_wait: float = 5.0  # the PROXY header, handshake and head (client_timeout)
    idle_wait: float = 5.0  # an idle kept-alive connection (keep_alive)
    most_waiting: int = 1000  # connections waiting (worker_connections)
    drain_grace: float = 1.0  # how long a retiring worker keeps an idle connection (see drain)
    send_wait: float = 60.0  # the whole rest of a response the handler left (send_timeout)

    @classmethod
    def of(cls, server: Any, kill_after: float) -> Limits:
        """``server``'s (core/waits.py), with the drain's grace within half of
        ``kill_after`` (the graceful timeout)."""
        idle = waits.idle_wait(server)
        return cls(waits.head_wait(server), idle, waits.most_waiting(server),
                   waits.drain_grace(idle, kill_after), waits.send_wait(server))


class Listening:
    """The listeners of one worker's multiplexer.  For the worker's loop: accept(fd) on an
    event for a listener, ``accepting`` (False: the listeners are out of the epoll set).  The
    subclass provides conns, deadlines, draining, interrupted and the hooks _dispatch,
    _dispatch_new, _open, _check and _held_new."""

    conns: dict[int, Conn]
    deadlines: Deadlines
    draining: bool
    interrupted: Callable[[], bool]

    def __init__(
        self, ep: select.epoll, servers: dict[int, socketserver.BaseServer],
        serve_new: Callable[[socketserver.BaseServer], Callable[[Any, Any], Resumable | None]],
        empty_accept: Callable[[], None], limits: Limits,
    ) -> None:
        self.ep = ep
        self.listeners = servers  # fd -> server; registered by the worker
        self.ready_modes = {fd: ready_when(cast(type, s.RequestHandlerClass))
                            for fd, s in servers.items()}
        self.stream = {fd: s.socket.type == socket.SOCK_STREAM  # type: ignore[attr-defined]
                       for fd, s in servers.items()}
        self.accepts = {fd: accept_function(s) for fd, s in servers.items()}
        self.serve_new = {fd: serve_new(s) for fd, s in servers.items()}
        # What accept() needs of a listener, in one lookup: (and whether to look at fds 0-2)
        self.entries = {fd: (self.accepts[fd], self.ready_modes[fd], self.serve_new[fd],
                             not keeps_std_fds(self.accepts[fd]))
                        for fd, stream in self.stream.items() if stream}
        self.proxied = proxied(servers)  # fd -> whom its PROXY headers are taken from
        self.empty_accept = empty_accept
        self.limits = limits
        self.accepting = True
        self.failures = AcceptFailures()  # what an error from accept() means (errnos.py)
        self.buf = bytearray(MAX_HEAD)
        for fd, server in servers.items():
            tune_listener(server.socket,  # type: ignore[attr-defined]
                          self.ready_modes[fd], limits.head_wait)

    def accept(self, fd: int, taken: tuple[Any, Any] | None = None) -> None:
        """An event on the listener ``fd`` (what on_event does for a listener); ``taken``: a
        connection accepted from it already (:meth:`admit`).  One frame for the accept and
        the first look: every new connection's path."""
        entry = self.entries.get(fd)
        if taken is not None:
            request, address = taken
        elif entry is None:
            self._take_datagrams(fd)
            return
        else:
            if len(self.conns) >= self.limits.most_waiting:
                self._pause_accepting()
                return
            if entry[3]:  # fds 0-2: a client socket must never take one (stdfds.py)
                ensure_open()
            try:
                request, address = entry[0]()
            except BlockingIOError:
                self.empty_accept()
                return
            except OSError as exc:
                return self.failures.failed(fd, exc, self._pause_accepting)
        # The connection just accepted: to its handler at once if it has work, else to wait.
        _, ready, serve, _ = entry  # type: ignore[misc]  # (a stream listener's: taken too)
        if fd in self.proxied or isinstance(request, ssl.SSLSocket):
            self._open(fd, Conn(request, address, self.listeners[fd], ready))
            return
        if ready is _DATA:  # the common path: bytes, or EOF (the handler sees it)
            try:
                request.recv_into(self.buf, 1, PEEK)
                go = True
            except (BlockingIOError, InterruptedError):
                go = False
            except OSError as exc:  # the handler sees the error, as with socketserver
                go = expect_peer_gone("a peek at a new connection", exc)
        else:
            go = ready is _ACCEPTED or head_arrived(request, self.buf)
        if go:
            resumable = serve(request, address)
            if resumable is not None:
                self._held_new(fd, request, address, resumable)
            return
        conn = Conn(request, address, self.listeners[fd], ready)
        conn.deadline = time.monotonic() + self.limits.head_wait
        self._check(conn, defer=False)

    def take(self, fd: int) -> tuple[Any, Any] | None:
        """Accept one connection from the stream listener ``fd`` without looking at it (the
        graceful stop's sweep, core/handover.py); None when none is queued (or accept failed)."""
        ensure_open()
        try:
            return self.entries[fd][0]()
        except BlockingIOError:
            return None
        except OSError as exc:
            self.failures.failed(fd, exc, self._pause_accepting)
            return None

    def admit(self, fd: int, request: Any, address: Any) -> None:
        """A connection just accepted from the stream listener ``fd`` (the graceful stop's
        sweep): to its handler at once if it has work, else to wait here."""
        self.accept(fd, (request, address))

    def _take_datagrams(self, fd: int) -> None:
        accept = self.accepts[fd]
        for taken in range(ACCEPT_BURST):
            try:
                request, address = accept()
            except BlockingIOError:
                if not taken:
                    self.empty_accept()
                return
            except OSError as exc:
                return self.failures.failed(fd, exc, self._pause_accepting)
            self._dispatch_new(fd, request, address)
            if self.interrupted() or self.draining or not self.accepting:
                return

    def _pause_accepting(self) -> None:
        if self.accepting:
            self.accepting = False
            for fd in self.listeners:
                unregister(self.ep, fd)

    def _resume_accepting(self) -> None:
        if self.failures.over() and len(self.conns) < self.limits.most_waiting:
            self.accepting = True
            for fd in self.listeners:
                self.ep.register(fd, LISTEN_EVENTS)

    # -- what the multiplexer provides ---------------------------------------------------------

    def _dispatch(self, conn: Conn) -> None:
        raise NotImplementedError

    def _dispatch_new(self, fd: int, request: Any, address: Any) -> None:
        raise NotImplementedError

    def _open(self, listener: int, conn: Conn) -> None:
        """A new connection on a listener with the PROXY protocol or TLS."""
        raise NotImplementedError

    def _check(self, conn: Conn, defer: bool, hup: bool = False) -> None:
        raise NotImplementedError

    def _held_new(self, fd: int, request: Any, address: Any, resumable: Resumable) -> None:
        raise NotImplementedError
