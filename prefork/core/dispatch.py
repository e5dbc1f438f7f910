"""socketserver's request path for a new connection, as a worker runs it, and the worker's
per-request bookkeeping around it.

The path is socketserver's own: ``verify_request``, ``process_request`` (which calls
``finish_request``, which builds the handler), ``shutdown_request`` (``close_request``), and
``handle_error`` when the handler raises.  Around it the worker offers to take the connection
back for keep-alive (:mod:`keepalive`): one :class:`~prefork.core.keepalive.Offer` per thread,
set in :data:`~prefork.core.keepalive.OFFER` once and refilled for each connection.

Why two versions.  This runs on every connection, and on the raw path (a minimal handler, one
connection per request) each Python call of the server's costs a measurable share of the
request (``docs/benchmarks.md``, "The raw path").  Where the server class keeps socketserver's
own request methods -- the usual case -- :func:`request_path` runs the same steps inline,
without their six layers of calls; a server that overrides any of them gets the general path,
which calls each one.  Both give the same result for every outcome of the handler.

:class:`Bookkeeping` is the single-threaded worker's begin/end of a request (the scoreboard,
the rate-limited title, recycling, the quick-stop check), made into one function with the path
by :meth:`Bookkeeping.counted` so the multiplexer makes one call per connection.
"""

from __future__ import annotations

import _socket
import contextlib
import logging
import os
import socket
import socketserver
import time
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from prefork.core import delegating
from prefork.core.accepting import PEEKED
from prefork.core.conn import Conn
from prefork.core.keepalive import OFFER, HoldsConnections, Offer, Resumable
from prefork.core.memguard import check_error
from prefork.core.outbox import CLOSING, PENDING, discard, pending
from prefork.core.scoreboard import SlotWriter
from prefork.ops.titles import TITLE_INTERVAL, WorkerTitle

log = logging.getLogger("prefork.worker")

_T = TypeVar("_T")
# ``(request, address)`` -> the handler that holds the connection now, or None.
Serve = Callable[[Any, Any], "Resumable | None"]

_Base = socketserver.BaseServer
_TCP = socketserver.TCPServer
_UDP = socketserver.UDPServer


def thread_offer() -> Offer:
    """This thread's offer (made and set on first use)."""
    offer = OFFER.get()
    if offer is None:
        offer = Offer()
        OFFER.set(offer)
    return offer


_REQUEST_METHODS = ("verify_request", "process_request", "finish_request", "shutdown_request",
                    "close_request")


def _after_holds(server: Any, name: str) -> Any:
    """The ``name`` method that ``HoldsConnections.shutdown_request``'s ``super()`` reaches."""
    mro = type(server).__mro__
    for klass in mro[mro.index(HoldsConnections) + 1:]:
        if name in vars(klass):
            return vars(klass)[name]
    return None


def _closing(server: Any) -> str | None:
    """How a connection ends when ``server`` keeps socketserver's own methods: "tcp"
    (shutdown(SHUT_WR), then close), "udp" (nothing to do), or None (call the methods)."""
    kind = type(server)
    if any(name in vars(server) for name in _REQUEST_METHODS):
        return None  # set on the instance, which socketserver calls through
    if (kind.verify_request is not _Base.verify_request
            or kind.process_request is not _Base.process_request
            or kind.finish_request is not _Base.finish_request):
        return None
    if isinstance(server, HoldsConnections):
        if kind.shutdown_request is not HoldsConnections.shutdown_request:
            return None
        shutdown = _after_holds(server, "shutdown_request")
    else:
        shutdown = kind.shutdown_request
    if shutdown is _TCP.shutdown_request and kind.close_request is _TCP.close_request:
        return "tcp"
    if shutdown is _UDP.shutdown_request and kind.close_request is _UDP.close_request:
        return "udp"
    return None


def request_path(server: socketserver.BaseServer, looked: bool = False) -> Serve:
    """``path(request, address)``: socketserver's path for one new connection on ``server``,
    in the calling thread; returns the handler that holds the connection now (keep-alive), or
    None (the connection was shut down).  ``looked``: the path runs in the worker's loop
    thread right after its look at the connection (``accepting.PEEKED``), which a handler
    class with a ``closing_path`` (accepting.ServesClosing) may serve from."""
    closing = _closing(server)
    # A thread or child of ThreadingMixIn/ForkingMixIn owns its connection (delegating.py).
    allowed = isinstance(server, HoldsConnections) and not delegating.delegates(server)
    delegating.prepare(server)
    if closing is None:
        return lambda request, address: _general(server, request, address, allowed)
    tcp = closing == "tcp"
    shut_wr = socket.SHUT_WR
    whole = None
    if looked and tcp and allowed:
        make = getattr(server.RequestHandlerClass, "closing_path", None)
        whole = make(server) if callable(make) else None
    peeked, close_fd = PEEKED, _socket.socket.close

    def direct(request: Any, address: Any) -> Resumable | None:
        offer = OFFER.get() or thread_offer()
        offer.request, offer.allowed, offer.resumable = request, allowed, None
        try:
            if whole is not None and peeked.sock is request:
                peeked.sock = None
                if whole(request, address, peeked.buf, peeked.size):
                    offer.request = None
                    if PENDING and pending(request):
                        return CLOSING  # (as below)
                    # No file of a handler's and no child has it (sockets are not inherited):
                    # close() itself sends the FIN that shutdown(SHUT_WR) would.  (What
                    # socket.close does with no file made, without its two Python frames.)
                    request._closed = True
                    close_fd(request)
                    return None
            server.RequestHandlerClass(request, address, server)
        except Exception:
            offer.request = offer.resumable = None
            check_error()  # --max-memory: a MemoryError may be the budget (core/memguard.py)
            server.handle_error(request, address)
            if tcp:
                _shut(request)
            return None
        except BaseException:
            offer.request = offer.resumable = None
            if tcp:
                _shut(request)
            raise
        resumable = offer.resumable
        offer.request = offer.resumable = None
        if resumable is None and tcp:
            if PENDING and pending(request):
                return CLOSING  # closed once the rest of the response is sent (outbox.py)
            try:  # noqa: SIM105 (contextlib.suppress costs two calls on every connection)
                request.shutdown(shut_wr)
            except OSError:
                pass  # the client closed first
            request.close()
        return resumable

    return direct


def _shut(request: Any) -> None:
    discard(request)
    with contextlib.suppress(OSError):
        request.shutdown(socket.SHUT_WR)
    request.close()


def _general(server: socketserver.BaseServer, request: Any, address: Any,
             allowed: bool) -> Resumable | None:
    """socketserver's ``_handle_request_noblock`` after the accept, one method at a time."""
    offer = thread_offer()
    offer.request, offer.allowed, offer.resumable = request, allowed, None
    try:
        if server.verify_request(request, address):
            try:
                server.process_request(request, address)
            except Exception:
                offer.resumable = None
                check_error()
                discard(request)
                server.handle_error(request, address)
                server.shutdown_request(request)
            except BaseException:
                offer.resumable = None
                discard(request)
                server.shutdown_request(request)
                raise
        else:
            server.shutdown_request(request)
        if offer.resumable is None and pending(request):
            return CLOSING  # closed once the rest of the response is sent (outbox.py)
        return offer.resumable
    finally:
        offer.request = offer.resumable = None


class Bookkeeping:
    """A single-threaded worker's begin and end of each request: the scoreboard slot (always
    exact), the title (rate-limited, see :class:`~prefork.ops.titles.WorkerTitle`), the
    recycling report, and the check for a quick stop that arrived before the request began.
    ``busy`` is True while a handler runs (the worker's signal handler reads it).

    Methods: counted(serve, refuse) -> the same function with the bookkeeping around it (one
    frame for both, for the multiplexer's one call per connection); serving(server) -> a new
    connection's request on ``server``, counted."""

    def __init__(self, slot: SlotWriter, title: WorkerTitle, pending: Collection[int],
                 quick: frozenset[int], stopping: Callable[[], bool],
                 recycle: Callable[[], None], recycle_after: int) -> None:
        self.slot, self.title, self.pending, self.quick = slot, title, pending, quick
        self.stopping, self.recycle, self.recycle_after = stopping, recycle, recycle_after
        self.busy = False

    def serving(self, server: socketserver.BaseServer) -> Serve:
        """``serve(request, address)``: a new connection's request on ``server``; the handler
        that holds the connection now, or None."""
        return self.counted(request_path(server, looked=True),
                            lambda request, address: _refuse(server, request))

    def counted(self, serve: Callable[[Any, Any], _T],
                refuse: Callable[[Any, Any], _T]) -> Callable[[Any, Any], _T]:
        """``serve(a, b)`` as one request: begun and ended on the scoreboard and the title;
        ``refuse(a, b)`` instead when a quick stop is pending."""
        slot, title, pending, quick = self.slot, self.title, self.pending, self.quick
        monotonic, interval, recycle_after = time.monotonic, TITLE_INTERVAL, self.recycle_after

        def request(a: Any, b: Any) -> _T:
            now = monotonic()
            slot.begin_request(now)  # before busy: a quick stop must not cut it short
            self.busy = True
            if pending and quick.intersection(pending):
                self.busy = False
                slot.end_request(monotonic())
                return refuse(a, b)
            # title.request("busy", now) and ("idle", now), inline: on every request's path.
            if now - title.idle_since >= interval or now - title.at >= interval:
                title.show("busy")
            elif not title.due:  # (set, it is at + interval already: show() clears it)
                title.due = title.at + interval
            try:
                return serve(a, b)
            finally:
                self.busy = False
                now = monotonic()
                slot.end_request(now)
                title.idle_since = now
                if title.state == "busy" or now - title.at >= interval:
                    if not self.stopping():
                        title.show("idle")
                elif not title.due:
                    title.due = title.at + interval
                if recycle_after and slot.requests == recycle_after:
                    self.recycle()  # keep serving until the replacement is ready

        return request


def _refuse(server: socketserver.BaseServer, request: Any) -> None:
    """A connection accepted as a quick stop began: closed unserved."""
    try:
        server.shutdown_request(request)
    except Exception:
        log.exception("worker (pid %d) shutdown_request failed", os.getpid())


def next_request(conn: Conn, head: Any = None) -> bool:
    """The next request on a held connection (``head``: read by the handler's take_head(),
    or None); True if the handler holds it again, else it is closed (or once the rest of the
    response is sent)."""
    resumable = conn.resumable
    assert resumable is not None
    try:
        # (a head: the handler is a keepalive.TakesHeads)
        keep = resumable.resume() if head is None else resumable.resume(head)  # type: ignore[call-arg]
    except Exception:
        check_error()
        conn.server.handle_error(conn.sock, conn.address)
        keep = False
    if not keep:
        conn.end()
    return conn.resumable is not None


def refuse_held(conn: Conn, _: Any) -> bool:
    """A held connection's request as a quick stop began: closed unserved."""
    conn.release()
    return False
