"""How a handler gives its connection back to the worker's multiplexer between requests.

A socketserver handler owns its connection until it returns, and ``process_request`` then shuts
the connection down.  An HTTP/1.1 handler waiting for the next keep-alive request would
therefore hold a whole worker while the client thinks.  The protocol below lets it hand the
connection back instead; it is small on purpose, so a handler written elsewhere (the WSGI
handler, say) can implement it without importing anything but :func:`hold`.

**The handler's side.**  After a complete response, when the connection should stay open, the
handler calls ``hold(self.request, self)`` and, if that returns True, returns from ``handle()``
*without closing its files*.  ``self`` must then provide (:class:`Resumable`):

* ``resume() -> bool`` -- serve the next request on the same connection; the worker calls it
  once a complete request head is waiting (in the socket, or in :meth:`buffered`).  Return True
  to keep the connection for another request, False when it should close.
* ``buffered() -> bytes`` -- bytes already read from the socket and not yet consumed (the read
  buffer of ``rfile``), without blocking; b"" if none.  A pipelined request sits there.
* ``close()`` -- the connection ends (timeout, stop, ``resume`` returned False or raised): close
  the handler's files.  The worker then calls the server's ``shutdown_request``.

``hold`` returns False wherever nobody can take the connection: the stdlib's sync, threading and
forking servers, a listener whose server does not honour holds, a second ``hold`` for another
socket.  The handler then simply goes on serving the connection itself, as it always did, so one
handler class works in every mode.  :class:`KeepAliveHTTPMixIn` implements all of this for
``http.server.BaseHTTPRequestHandler`` subclasses; the worker applies it by itself to such
handlers (see :func:`with_keep_alive`).

**The worker's side.**  Around each ``process_request`` it sets an :class:`Offer` for that
request in :data:`OFFER`; :func:`hold` records the handler in it.  The server's
``shutdown_request`` must leave a held connection alone: :class:`HoldsConnections` (a base of
``PreforkMixIn``) does that, and the offer only allows a hold for servers that have it.

**Retiring.**  A worker that retires (a reload, recycling, a graceful stop) calls
:func:`retire`; from then on :func:`retiring` is True in that process, and a handler answers
each request with ``Connection: close`` (:class:`KeepAliveHTTPMixIn` adds the field in
``end_headers``; the WSGI handler does the same), so a keep-alive client learns from a response
that the connection ends, instead of sending its next request into a close.

A handler may also say when its connection is worth handing over (``ready_when``, see
:class:`Ready`): by default an HTTP handler once a complete request head arrived, any other
stream handler once the first bytes arrived.  A protocol where the server speaks first sets
``ready_when = Ready.ACCEPTED``.
"""

from __future__ import annotations

import _socket
import enum
import functools
import http.server
import socket
import ssl
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol

from prefork.core import httplimits, httpserverlimits
from prefork.core.forwarding import client
from prefork.core.outbox import OutboxWriter, pending
from prefork.core.trust import forwarders
from prefork.core.unread import announced, counting_rfile, drop_unread, position
from prefork.ops import accesslog


class Ready(enum.Enum):
    """When a new connection goes from the multiplexer to the handler."""

    ACCEPTED = "accepted"  # at once (the server speaks first)
    DATA = "data"  # once the client sent something (a plain stream handler)
    HEAD = "head"  # once a complete HTTP request head arrived (BaseHTTPRequestHandler)


def handler_class(factory: Any) -> type | None:
    """The class a ``RequestHandlerClass`` builds: the class itself, or the class a
    ``functools.partial`` of one wraps (partials of partials too); None for any other
    callable (a lambda, a callable instance), whose result is unknown until it runs."""
    while isinstance(factory, functools.partial):
        factory = factory.func
    return factory if isinstance(factory, type) else None


def replace_class(factory: Any, change: Callable[[Any], Any]) -> Any:
    """``change(factory)``, or for a ``functools.partial`` the same partial around
    ``change`` of what it wraps (``factory`` itself where that is unchanged)."""
    if isinstance(factory, functools.partial):
        inner = replace_class(factory.func, change)
        if inner is factory.func:
            return factory
        return functools.partial(inner, *factory.args, **factory.keywords)
    return change(factory)


def takes_over(factory: Any) -> bool:
    """True where the worker may serve the handler's keep-alive requests itself: an
    ``http.server`` handler whose ``handle()`` is ``BaseHTTPRequestHandler``'s own (or
    :class:`KeepAliveHTTPMixIn`'s), or a handler that opts in with a ``resume`` of its own.
    A handler with its own ``handle()`` (wsgiref's, xmlrpc's, a subclass's) runs untouched."""
    cls = handler_class(factory)
    if cls is None:
        return False
    if issubclass(cls, KeepAliveHTTPMixIn) or callable(getattr(cls, "resume", None)):
        return True
    return (issubclass(cls, http.server.BaseHTTPRequestHandler)
            and cls.handle is http.server.BaseHTTPRequestHandler.handle)


def ready_when(factory: Any) -> Ready:
    """The handler's ``ready_when``, or the default for its kind: a complete HTTP head for a
    handler the worker takes over (see :func:`takes_over`), the first bytes otherwise (no
    HTTP peek, so no 408/431 of the worker's for a handler that parses its own requests)."""
    cls = handler_class(factory)
    declared = getattr(cls if cls is not None else factory, "ready_when", None)
    if isinstance(declared, Ready):
        return declared
    if takes_over(factory):
        return Ready.HEAD
    return Ready.DATA


def idle_for(resumable: Any, idle: float) -> float:
    """A held connection's idle wait: ``keep_alive``, or the handler's own shorter ``timeout``
    (StreamRequestHandler's), which bounds that wait under socketserver too."""
    own = getattr(resumable, "timeout", None)
    return own if isinstance(own, (int, float)) and 0 < own < idle else idle


class Resumable(Protocol):
    """What a handler that held its connection provides (see the module docstring)."""

    def resume(self) -> bool: ...

    def buffered(self) -> bytes: ...

    def close(self) -> None: ...


# take_head() without a head: nothing arrived, the connection ended, or what arrived (part of
# a head, another shape) waits in the handler's buffer for the multiplexer's own look.
NOTHING, GONE, OTHER = 0, 1, 2


class TakesHeads(Resumable, Protocol):
    """A held handler that reads its next request head itself, in place of the multiplexer's
    peek (the WSGI handler on a plain socket in a prefork worker: ``mux.py``).  take_head():
    the request read off (for resume(): the WSGI handler's is a plain request's environ, or a
    head of the common shape); else NOTHING, GONE or OTHER.  ``_clean``: nothing of a next
    request is in the handler's buffer (buffered() would say b""); private, as it was the
    handler's own: a subclass may have a ``clean`` of its own (a review)."""

    _clean: bool

    def take_head(self) -> Any: ...

    def resume(self, head: Any = None) -> bool: ...


class Offer:
    """The worker's offer, for one dispatch, to take ``request`` back after the handler (one
    object per thread, refilled for each connection: see ``dispatch.py``)."""

    __slots__ = ("allowed", "request", "resumable")

    def __init__(self, request: Any = None, allowed: bool = False) -> None:
        self.request = request
        self.allowed = allowed
        self.resumable: Resumable | None = None

    def take(self, request: Any, resumable: Resumable) -> bool:
        if not self.allowed or request is not self.request or self.resumable is not None:
            return False
        self.resumable = resumable
        return True

    def drop(self) -> None:
        """The handler failed after holding: the connection is closed as usual."""
        self.resumable = None


# This thread's offer (a ContextVar: with handler threads each has its own); between
# dispatches its ``request`` is None, so nothing can be held.
OFFER: ContextVar[Offer | None] = ContextVar("prefork_keepalive_offer", default=None)


RETIRING = [False]  # this process's worker is retiring (see the module docstring)


def retire() -> None:
    """This worker retires: every response from now on says ``Connection: close``."""
    RETIRING[0] = True


def retiring() -> bool:
    return RETIRING[0]


def hold(request: Any, resumable: Resumable) -> bool:
    """Hand ``request`` (the handler's ``self.request``) back to the worker between requests.
    True: the worker has it -- return from ``handle()`` without closing the files."""
    offer = OFFER.get()
    return offer is not None and offer.take(request, resumable)


class HoldsConnections:
    """Server mix-in: ``shutdown_request`` leaves a held connection open."""

    def shutdown_request(self, request: Any) -> None:
        offer = OFFER.get()  # held during this dispatch, or its response still being sent?
        if offer is not None and offer.request is request and (
                offer.resumable is not None or pending(request)):
            return
        super().shutdown_request(request)  # type: ignore[misc]


_kind = _socket.socket.type.__get__  # a socket's type, without the enum socket.type makes


def outbox_writer(request: Any, timeout: float | None = None) -> OutboxWriter | None:
    """A ``wfile`` for the handler of ``request`` whose writes never wait for the client
    (core/outbox.py), where this dispatch may hold the connection (a prefork worker's); else
    None: the handler keeps its own (``sendall``).  ``timeout``: the handler's, for a write
    that must wait (default: the socket's)."""
    offer = OFFER.get()
    if offer is None or not offer.allowed or offer.request is not request:
        return None
    if not isinstance(request, socket.socket) or _kind(request) != socket.SOCK_STREAM:
        return None
    return OutboxWriter(request, timeout)


def read_ahead(rfile: Any, sock: socket.socket) -> bytes:
    """What a buffered ``rfile`` holds, without blocking (it may read what the socket has)."""
    peek = getattr(rfile, "peek", None)
    if peek is None or rfile.closed:
        return b""
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        return bytes(peek())
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return b""
    except OSError:  # reset by the client: nothing buffered; the multiplexer's peek sees why
        return b""
    finally:
        sock.settimeout(timeout)


class KeepAliveHTTPMixIn:
    """Handler mix-in (first in the bases) for ``BaseHTTPRequestHandler`` subclasses: between
    keep-alive requests the connection waits in the worker's multiplexer, not in the handler.
    One handler instance serves all the requests of its connection, so ``rfile``'s read-ahead
    (pipelined requests) is kept.  Anywhere :func:`hold` is refused it behaves exactly like
    ``BaseHTTPRequestHandler.handle``."""

    close_connection: bool
    request: Any
    connection: socket.socket
    rfile: Any
    wfile: Any
    _prefork_held = False
    _prefork_body: tuple[int, int] | None = None  # announced size (-1: chunked), its start
    _prefork_code: Any = None  # the status log_request got, for the access log
    _prefork_length: str | None = None  # the Content-Length sent, for the access log
    peer_address: Any = None  # the connection's peer (client_address: see parse_request)
    client_address: Any
    server: Any
    headers: Any

    def setup(self) -> None:
        super().setup()  # type: ignore[misc]
        if getattr(self, "wbufsize", None) == 0:  # (socketserver's _SocketWriter: sendall)
            writer = outbox_writer(self.request)
            if writer is not None:  # a prefork worker's: writes and the body (unread.py)
                self.wfile = writer
                self.rfile = counting_rfile(self.connection, self.rfile,
                                            getattr(self, "rbufsize", -1))

    # The multiplexer's look at a head not ended yet (httpserverlimits.py), with these limits.
    judge_head = staticmethod(httpserverlimits.judge)
    head_limits = httplimits.HTTP_SERVER
    raw_requestline: bytes
    requestline: str
    request_version: str
    command: str

    def parse_request(self) -> bool:
        """As BaseHTTPRequestHandler's, within the server's limit_request_* (414, 431;
        ``httpserverlimits.py``); then ``client_address`` is the client a trusted proxy's
        headers name, for this request (``forwarding.py``; the connection's peer is kept in
        ``peer_address``)."""
        self._prefork_body = None
        limits = httplimits.of(self.server, httplimits.HTTP_SERVER)
        own = httplimits.stdlib(limits)  # nothing set: exactly as the stdlib
        if not own and httpserverlimits.line_too_long(self.raw_requestline, limits):
            # (as BaseHTTPRequestHandler answers a line over its own 64 KiB)
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)  # type: ignore[attr-defined]
            return False
        ok = bool(super().parse_request())  # type: ignore[misc]
        if ok and not own and (problem := httpserverlimits.fields_refused(self.headers, limits)):
            self.send_error(431, None, problem)  # type: ignore[attr-defined]
            return False
        if ok:
            size = announced(getattr(self, "headers", {}))
            start = position(self.rfile, self.connection) if size else None
            if start is not None:
                self._prefork_body = (size, start)
            if self.peer_address is None:
                self.peer_address = self.client_address
            spec = forwarders(self.server)
            self.client_address = client(self.headers, self.peer_address, spec)
        return ok

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection:
            if hold(self.request, self):
                self._prefork_held = True
                return
            self.handle_one_request()

    def handle_one_request(self) -> None:
        # The access log's line (ops/accesslog.py), once the request is over.
        started, self._prefork_code, self._prefork_length = time.perf_counter(), None, None
        super().handle_one_request()  # type: ignore[misc]
        body, self._prefork_body = self._prefork_body, None
        if body is not None and not self.close_connection:
            try:
                if not drop_unread(self.rfile, self.connection, *body):
                    self.close_connection = True  # the rest is not waited for (unread.py)
            except OSError:
                self.close_connection = True
        if self._prefork_code is not None and accesslog.ACTIVE:
            accesslog.ACTIVE[0].record_http(self, self._prefork_code, self._prefork_length,
                                            time.perf_counter() - started)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        if not accesslog.ACTIVE:
            super().log_request(code, size)  # type: ignore[misc]
        else:
            self._prefork_code = int(code) if isinstance(code, int) else code

    def send_header(self, keyword: str, value: str) -> None:
        if accesslog.ACTIVE and keyword.lower() == "content-length":
            self._prefork_length = str(value)
        super().send_header(keyword, value)  # type: ignore[misc]

    def end_headers(self) -> None:
        if RETIRING[0] and not self.close_connection:
            self.send_header("Connection", "close")
        super().end_headers()  # type: ignore[misc]

    def finish(self) -> None:
        if not self._prefork_held:
            super().finish()  # type: ignore[misc]

    def resume(self) -> bool:
        timeout = getattr(self, "timeout", None)  # StreamRequestHandler.timeout, as in setup()
        if timeout is not None:
            self.connection.settimeout(timeout)
        self.close_connection = True
        self.handle_one_request()
        return not self.close_connection

    def buffered(self) -> bytes:
        return read_ahead(self.rfile, self.connection)

    def close(self) -> None:
        self._prefork_held = False
        self.finish()


def with_keep_alive(factory: Any) -> Any:
    """``factory`` (a handler class, or a ``functools.partial`` of one) with
    :class:`KeepAliveHTTPMixIn` where the worker takes over (:func:`takes_over`) and the class
    lacks it; else ``factory`` itself, untouched (any other callable, any handler with a
    ``handle()`` or ``resume()`` of its own)."""
    if isinstance(factory, functools.partial):
        return replace_class(factory, with_keep_alive)
    cls = handler_class(factory)
    if (cls is None or not takes_over(cls) or issubclass(cls, KeepAliveHTTPMixIn)
            or callable(getattr(cls, "resume", None))):
        return factory
    return type(cls.__name__, (KeepAliveHTTPMixIn, cls),
                {"__module__": cls.__module__, "__qualname__": cls.__qualname__})


def take_over(servers: Any) -> None:
    """In a worker: each of ``servers`` that honours holds serves with :func:`with_keep_alive`
    of its handler."""
    for server in servers:
        if isinstance(server, HoldsConnections):
            server.RequestHandlerClass = with_keep_alive(  # type: ignore[attr-defined]
                server.RequestHandlerClass)  # type: ignore[attr-defined]
