"""The way out of the worker's multiplexer: the rest of a response that its handler left
unsent (``outbox.py``), sent from the worker's loop as the client reads, within
``send_timeout`` in all; then the connection goes back to waiting for its next request (or
closes)."""

from __future__ import annotations

import select
import time
from collections.abc import Callable

from prefork.core.conn import Conn, Deadlines, Phase
from prefork.core.errnos import expect_peer_gone
from prefork.core.listeners import Limits
from prefork.core.outbox import Outbox

PLAIN_EVENTS = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
TLS_EVENTS = PLAIN_EVENTS | select.EPOLLOUT  # a handshake may wait to write
SEND_EVENTS = select.EPOLLOUT | select.EPOLLET  # (TLS: EPOLLIN too, a send may want to read)


class Sending:
    """The multiplexer's sending of what handlers left unsent.  The subclass provides ep,
    conns, deadlines, limits, _held (the connection's next wait) and _close."""

    ep: select.epoll
    conns: dict[int, Conn]
    deadlines: Deadlines
    limits: Limits
    _held: Callable[[Conn], None]
    _close: Callable[[Conn], None]

    def _send_rest(self, conn: Conn, outbox: Outbox) -> None:
        """The handler returned with part of its response unsent (``outbox``, see outbox.py):
        the rest is sent from here as the client reads, within send_timeout in all."""
        conn.phase = Phase.SENDING
        conn.outbox = outbox
        conn.sock.settimeout(0.0)
        events = SEND_EVENTS | (select.EPOLLIN if conn.tls else 0)
        if conn.registered:
            self.ep.modify(conn.fd, events)  # (edge-triggered: reports writable at once)
        else:
            self.ep.register(conn.fd, events)
            conn.registered = True
        self.conns[conn.fd] = conn
        self.deadlines.arm(conn, time.monotonic() + self.limits.send_wait)

    def _send_more(self, conn: Conn) -> None:
        outbox = conn.outbox
        assert outbox is not None
        try:
            if not outbox.send(conn.sock):
                return
        except OSError as exc:
            expect_peer_gone("sending a response", exc)
            self._close(conn)
            return
        conn.outbox = None
        self.conns.pop(conn.fd, None)
        self.ep.modify(conn.fd, TLS_EVENTS if conn.tls else PLAIN_EVENTS)
        conn.phase = Phase.BUSY  # (between the two: _held makes it IDLE, or closes it)
        self._held(conn)
