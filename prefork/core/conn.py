"""A connection as the worker's multiplexer sees it, and the deadlines of the waiting ones."""

from __future__ import annotations

import contextlib
import enum
import heapq
import itertools
import logging
import os
import socket
import socketserver
import ssl
from typing import Any

from prefork.core.keepalive import Ready, Resumable
from prefork.core.memguard import check_error
from prefork.core.outbox import CLOSING, Outbox, discard, pending

log = logging.getLogger("prefork.worker")


class Phase(enum.Enum):
    PROXY = "proxy"  # its PROXY protocol header awaited (proxyproto.py)
    HANDSHAKE = "handshake"  # TLS handshake under way
    WAITING = "waiting"  # accepted (handshake done), nothing received yet
    PARTIAL = "partial"  # part of an HTTP request head received
    IDLE = "idle"  # between keep-alive requests
    SENDING = "sending"  # the handler is done; the rest of its response is being sent
    BUSY = "busy"  # in the handler
    CLOSED = "closed"


WAITING = frozenset({Phase.PROXY, Phase.HANDSHAKE, Phase.WAITING, Phase.PARTIAL, Phase.IDLE,
                     Phase.SENDING})


class Conn:
    """One connection the worker accepted (``sock`` is socketserver's ``request``)."""

    __slots__ = ("address", "budget", "deadline", "direct", "fd", "hup", "idle", "judged", "outbox",
                 "phase", "queued_at", "ready", "registered", "resumable", "server", "sock", "tls")

    def __init__(self, sock: Any, address: Any, server: socketserver.BaseServer, ready: Ready):
        self.sock = sock
        self.address = address
        self.server = server
        self.ready = ready
        # A wrapper around a socket (what some get_request() returns) waits on the socket's fd.
        fileno = getattr(sock, "fileno", None)
        self.fd: int = fileno() if callable(fileno) else -1
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.phase = Phase.WAITING
        self.deadline = 0.0  # time.monotonic() the current wait ends
        self.queued_at: float | None = None  # the deadline queued in Deadlines, if any
        self.registered = False  # in the epoll set (stays so while BUSY: closing removes it)
        self.resumable: Resumable | None = None  # the handler holding it (keep-alive)
        self.budget: int | None = None  # in a graceful stop: requests it may still have served
        self.outbox: Outbox | None = None  # what the multiplexer sends (SENDING; outbox.py)
        self.judged: tuple[int, bool, bool] | None = None  # a partial head's (accepting.judge)
        self.direct = False  # IDLE, its handler reads the next head itself (mux.on_event)
        self.idle = 0.0  # its wait between requests, once held (keepalive.idle_for)
        # The client half-closed (an event said EPOLLRDHUP): no edge will come for that again.
        self.hup = False

    def release(self) -> None:
        """Close the connection through its server (and the handler holding it, if any)."""
        self._let_go()
        if self.outbox is not None:
            self.outbox.close()
            self.outbox = None
        discard(self.sock)
        try:
            self.server.shutdown_request(self.sock)
        except Exception:
            log.exception("worker (pid %d) shutdown_request failed", os.getpid())

    def end(self) -> None:
        """The handler is done with the connection (its resume() said close): closed now, or
        once the rest of its response is sent (the handler finished now, CLOSING holds it)."""
        if not pending(self.sock):
            self.release()
            return
        self._let_go()
        self.resumable = CLOSING

    def _let_go(self) -> None:
        if self.resumable is not None:
            try:
                self.resumable.close()  # the handler's finish(), deferred while it was held
            except Exception:  # as socketserver does with an exception from finish()
                check_error()
                self.server.handle_error(self.sock, self.address)
            self.resumable = None


class Deadlines:
    """The connections' deadlines, in a heap with at most one live entry per connection: an
    extended deadline is re-queued when its old entry comes up, not on every extension."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, Conn]] = []  # empty: nothing to expire (the loop checks)
        self._order = itertools.count()

    def arm(self, conn: Conn, deadline: float) -> None:
        conn.deadline = deadline
        if conn.queued_at is None or deadline < conn.queued_at:
            conn.queued_at = deadline
            heapq.heappush(self.heap, (deadline, next(self._order), conn))

    def next(self) -> float | None:
        return self.heap[0][0] if self.heap else None

    def due(self, now: float) -> list[Conn]:
        """The waiting connections whose deadline passed."""
        out = []
        heap = self.heap
        while heap and heap[0][0] <= now:
            deadline, _, conn = heapq.heappop(heap)
            if conn.queued_at != deadline:
                continue  # superseded by an earlier entry
            conn.queued_at = None
            if conn.phase not in WAITING:
                continue
            if conn.deadline > now:
                self.arm(conn, conn.deadline)
            else:
                out.append(conn)
        return out


DRAIN_LIMIT = 256 * 1024  # bytes discarded before closing after an error reply
NOSIGNAL = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL


def reply_before_close(sock: socket.socket, reply: bytes) -> None:
    """Send ``reply`` if the socket takes it at once, and shut the sending side, without a
    reset: bytes left unread would make the kernel answer the close with RST and lose the
    reply, so up to DRAIN_LIMIT bytes the client sent are read and discarded first.  The
    caller then closes.  On TLS the reply is one record, and the drain reads ciphertext."""
    with contextlib.suppress(OSError):
        if isinstance(sock, ssl.SSLSocket):
            sock.setblocking(False)
            sock.send(reply)  # takes no flags; SIGPIPE is ignored (Python's default)
        else:
            sock.send(reply, NOSIGNAL)
        sock.shutdown(socket.SHUT_WR)
        drained = 0
        while drained < DRAIN_LIMIT:
            chunk = sock.recv(65536, socket.MSG_DONTWAIT)
            if not chunk:
                break
            drained += len(chunk)
