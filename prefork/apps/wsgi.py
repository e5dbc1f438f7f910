"""An HTTP/1.1 server for WSGI applications, as a socketserver request handler.

``wsgi_handler(app)`` is a ``StreamRequestHandler`` class like any other: every server mode
runs it (prefork, fork, thread, sync), on TCP or on a unix stream socket.  One handler call
serves one connection, request after request while the client keeps it alive:

* the request head is parsed strictly and bounded (:mod:`prefork.apps.request`; with httptools
  installed, llhttp reads the common heads first, :mod:`prefork.apps.fasthead`; in a prefork
  worker a plain head -- all that arrived, no body -- becomes its environ in one pass,
  :mod:`prefork.apps.plainpath`, and every other head goes the strict way), the body is
  read by Content-Length or chunked (:mod:`prefork.apps.body`), the response is streamed as
  the application yields it (:mod:`prefork.apps.response`);
* HTTP/1.1 connections stay open after a response unless the client, the application or an
  error says otherwise; HTTP/1.0 ones close after it.  Between requests a prefork worker's
  multiplexer holds the connection (``hold()``, prefork.core.keepalive); where nobody can take
  it (the stdlib modes) the handler waits at most ``idle_timeout`` seconds itself.  A connection
  serves at most ``max_keepalive_requests`` (0, the default: no limit, as gunicorn and uWSGI).
  Under a sync server (one connection at a time for the whole server) every response closes.
* A chunked request body is read in full before the application is called (in memory, then
  in a temporary file past 1 MiB; at most ``max_buffered_body`` bytes, else 413) and passed
  with its ``CONTENT_LENGTH``, as waitress does: Django, among others, reads only
  ``CONTENT_LENGTH`` bytes and would see an empty body.  With ``buffer_chunked = False`` the
  application reads the decoded chunks as they arrive instead, until ``wsgi.input`` ends
  (``wsgi.input_terminated``), with no ``CONTENT_LENGTH`` (Flask/werkzeug handle that).
* An exception from the application is logged once with its traceback and answered with 500
  when no header was sent yet; otherwise the connection is closed, which is all HTTP/1.1 lets a
  server say about a response that broke half way.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import socketserver
import ssl
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, cast

from prefork.apps import closing, forwarded, serverside
from prefork.apps.body import Body, ChunkedBody, IncompleteBody, LengthBody, spool
from prefork.apps.environ import add_fields, split_target
from prefork.apps.plainpath import PlainRequests, joins
from prefork.apps.request import RequestError, RequestHead, framing, host, judge
from prefork.apps.response import ClientGone, Response
from prefork.core import connio, httplimits
from prefork.core.keepalive import (
    GONE,
    RETIRING,
    Ready,
    hold,
    outbox_writer,
    read_ahead,
)
from prefork.core.memguard import check_error
from prefork.core.servers import PreforkMixIn
from prefork.ops import accesslog

_new = object.__new__  # (a Response made on every kept-alive request: resume)
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

log = logging.getLogger("prefork.wsgi")

_INET = (socket.AF_INET, socket.AF_INET6)
REASONS = {400: "Bad Request", 413: "Content Too Large", 414: "URI Too Long",
           417: "Expectation Failed", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 501: "Not Implemented",
           505: "HTTP Version Not Supported"}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class WSGIRequestHandler(PlainRequests, socketserver.StreamRequestHandler):
    """Serves the WSGI application ``application`` (set by :func:`wsgi_handler`, or else the
    server's ``get_app()``, as wsgiref's ``WSGIServer`` has) on one connection.

    Tunables (class attributes): ``timeout`` (seconds one read or write may wait inside a
    request), ``idle_timeout`` (seconds to wait for a request to begin), ``max_keepalive_requests``
    (requests on one connection), ``drain_limit`` (bytes of an unread request body skipped to
    keep the connection), ``url_scheme`` (under TLS always ``https``), ``buffer_chunked`` and
    ``max_buffered_body`` (chunked bodies: the module docstring)."""

    timeout: ClassVar[float | None] = 30.0
    idle_timeout: ClassVar[float] = 5.0
    max_keepalive_requests: ClassVar[int] = 0  # 0: no limit
    drain_limit: ClassVar[int] = 1 << 20
    url_scheme: ClassVar[str] = "http"
    buffer_chunked: ClassVar[bool] = True
    max_buffered_body: ClassVar[int] = 1 << 30
    application: ClassVar[WSGIApp | None] = None

    connection: socket.socket

    def setup(self) -> None:
        # In a prefork worker, what the client does not read at once is sent by the worker's
        # multiplexer after this handler (prefork.core.outbox): a slow reader holds no handler.
        writer = outbox_writer(self.request, self.timeout) if self.wbufsize == 0 else None
        if writer is not None and not isinstance(self.request, ssl.SSLSocket):
            # On a plain socket, reads that wait only when they must, under ``timeout``
            # (core/connio.py): no timeout set on the socket now, no file made to be replaced.
            # (A prefork listener has TCP_NODELAY already, and accepted sockets inherit it.)
            self.connection = self.request
            self.rfile, self._raw = connio.reader(self.request, self.rbufsize, self.timeout)
            self._full = self.rbufsize if self.rbufsize > 0 else io.DEFAULT_BUFFER_SIZE
            self.wfile = writer
            if self.disable_nagle_algorithm:
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
            return
        super().setup()
        if writer is not None:
            self.wfile = writer
        if (not isinstance(self.server, PreforkMixIn)
                and self.connection.family in (socket.AF_INET, socket.AF_INET6)):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # In a prefork worker the connection reaches the handler once a request head is complete,
    # and between keep-alive requests it waits in the worker's multiplexer (hold()), not here.
    ready_when: ClassVar[Ready] = Ready.HEAD

    @classmethod
    def closing_path(cls, server: socketserver.BaseServer) -> closing.ServeClosing | None:
        """A new connection's only request, when it is plain and says close, served without
        a handler of its own (accepting.ServesClosing: apps/closing.py)."""
        return closing.closing_path(cls, WSGIRequestHandler, server)

    # A head that has not ended yet is judged by this handler's own parser in the worker's
    # multiplexer, so one it refuses is answered at once (core/httppeek.py).
    judge_head = staticmethod(judge)
    _held = False
    _raw: connio.ConnIO | None = None  # rfile's raw stream in a prefork worker
    _full = io.DEFAULT_BUFFER_SIZE  # rfile's buffer size
    # The last head read was all that had arrived, and had no body: nothing buffered
    # (keepalive.TakesHeads: the multiplexer reads it instead of calling buffered()).
    _clean = False
    _trust: forwarded.Trusted | None = None
    _limits = httplimits.DEFAULT
    _side: serverside.ServerSide | None = None

    def handle(self) -> None:
        app = type(self).application
        if app is None:
            app = self.server.get_app()  # type: ignore[attr-defined]
        side = self._side = serverside.of(self.server)  # (read once per server)
        self._app, self._base, self._count = app, self.base_environ(), 0
        self._joins = joins(self._base)  # (a subclass's base may hold field keys)
        # Proxy headers count from the peers that forwarded_allow_ips trusts (apps/forwarded.py).
        self._trust = side.trust if side.trust.peer(self.client_address) else None
        self._read_head = side.read_head
        self._limits = side.limits  # limit_request_* (core/httplimits.py)
        # A sync server serves one connection at a time: an idle client would stall it.
        self._keep_alive = side.concurrent
        # In a prefork worker the first head is there already (the multiplexer waited for it),
        # and read as a held connection's next one is (a plain one: apps/plainpath.py).
        first = self._raw is not None
        head = self.take_head() if first else None
        if head == GONE:
            return
        while (first or self._wait_for_request()) and self.resume(
                None if isinstance(head, int) else head):  # (else in the reader's buffer)
            first, head = False, None
            if hold(self.request, self):  # the worker waits for the next request head
                self._held = True
                return

    def resume(self, head: RequestHead | dict[str, Any] | None = None) -> bool:
        """Serve the next request on this connection (``head``: its head, or a plain
        request's environ, read already by :meth:`take_head`); True if it may carry another."""
        self._count += 1
        # A retiring worker says so: "Connection: close" (see prefork.core.keepalive).
        most = self.max_keepalive_requests  # (per request: it may change, a review found)
        if isinstance(head, dict):  # a plain request's environ (take_head: apps/plainpath.py)
            # Response(wfile, head_only, http11, reusable, sock) without its __init__'s frame
            # (tests/wsgi/test_response_heads.py checks it makes the same object).
            response = _new(Response)
            response.wfile, response.sock = self.wfile, self.connection
            response.head_only, response.http11 = self._head_only, self._http11
            response.close = not (not self._closing and self._keep_alive and (
                not most or self._count < most) and not RETIRING[0])
            response.status, response.headers_sent = None, False
            return self._run(self._app, head, None, response, head["REQUEST_METHOD"],
                             head["REQUEST_URI"])
        if self._raw is None:  # (else its reads set the timeout when one must wait)
            self.connection.settimeout(self.timeout)
        if head is None:
            self._clean = False
            try:
                head = self._read_head(self.rfile, self._limits)
            except RequestError as exc:
                self._refuse(exc)
                return False
            except OSError:
                return False
            if head is None:
                return False
        allow = self._keep_alive and (not most or self._count < most) and not RETIRING[0]
        return self.serve(self._app, head, self._base, allow)

    def buffered(self) -> bytes:
        """A pipelined request already read from the socket (for the multiplexer)."""
        if self._clean:
            return b""
        if self._raw is not None:
            return connio.buffered(self.rfile, self._raw)
        return read_ahead(self.rfile, self.connection)

    def finish(self) -> None:
        if not self._held:
            super().finish()

    def close(self) -> None:
        """The held connection ends (the worker closes the socket itself)."""
        self._held = False
        self.finish()

    def _wait_for_request(self) -> bool:
        """Wait up to ``idle_timeout`` for the first byte of a request; False: give up."""
        self.connection.settimeout(self.idle_timeout)
        try:
            return bool(cast(io.BufferedReader, self.rfile).peek(1))
        except OSError:
            return False
        finally:
            self.connection.settimeout(self.timeout)

    def serve(self, app: WSGIApp, head: RequestHead, base: dict[str, Any], allow: bool) -> bool:
        """Serve one request; True if the connection may carry another."""
        try:
            body = self.make_body(head)
            environ = self.make_environ(head, body, base)
            if isinstance(body, ChunkedBody) and self.buffer_chunked:
                environ["wsgi.input"], size = spool(body, self.max_buffered_body)
                environ["CONTENT_LENGTH"] = str(size)
        except RequestError as exc:
            self._refuse(exc)
            return False
        except IncompleteBody:
            return False
        http11 = head.version != "HTTP/1.0"  # (head.http11)
        close = not allow or not http11 or (
            head.closing if head.plain else "close" in head.tokens("connection"))
        # A plain socket may take a file with sendfile (wsgi.file_wrapper); TLS may not.
        plain = None if isinstance(self.connection, ssl.SSLSocket) else self.connection
        response = Response(self.wfile, head_only=head.method == "HEAD", http11=http11,
                            reusable=not close, sock=plain)
        return self._run(app, environ, body, response, head.method, head.target)

    def _run(self, app: WSGIApp, environ: dict[str, Any], body: Body | None,
             response: Response, method: str, target: str) -> bool:
        """The application's response to ``environ`` (``body``: its request body, None for a
        plain request's empty one; ``method`` and ``target`` for the log, which must not
        depend on what the application leaves in the environ); True if the connection may
        carry another request."""
        given = body if body is not None else environ["wsgi.input"]  # (closed by its owner)
        access = accesslog.ACTIVE[0] if accesslog.ACTIVE else None  # --access-logfile
        started = time.perf_counter() if access is not None and access.timed else 0.0
        try:
            try:
                result = app(environ, response.start_response)
                try:
                    response.run(result)
                finally:
                    closer = None if type(result) is list else getattr(result, "close", None)
                    if closer is not None:
                        closer()
            except ClientGone:
                return False
            except IncompleteBody as exc:
                log.debug("worker (pid %d) %s %s: %s", os.getpid(), method, target, exc)
                return False
            except RequestError as exc:
                if not response.headers_sent:
                    self._refuse(exc)
                return False
            except Exception:
                check_error()  # --max-memory: lifts the budget first, so the 500 can be sent
                log.exception("worker (pid %d) error in the application on %s %s",
                              os.getpid(), method, target)
                if not response.headers_sent:
                    self._error(response, 500, "")
                return False
            if response.close:
                return False
            # What the application left of the body stands between this request and the next.
            if body is not None and not body.finished:
                if body.on_first_read is not None:
                    return False  # the client still waits for 100 Continue: it sent no body
                return self._drop_arrived(body)
            return True
        finally:
            current = environ.get("wsgi.input", given)  # (what the application left)
            if current is not given:
                current.close()
            if access is not None:  # (ops/accesslog.py)
                access.record(environ, response.status, response.sent, started)

    def _drop_arrived(self, body: Body) -> bool:
        """Drop what the application left of the body if it has arrived already (up to
        ``drain_limit`` bytes; True: the connection may carry another request).  A body still
        on its way closes the connection instead: read at the client's pace, a dripped body
        would hold this handler for as long as the client likes."""
        try:
            with connio.nowait(self._raw, self.connection):  # a read that would wait ends it
                return body.drain(self.drain_limit)
        except (RequestError, OSError):  # (IncompleteBody, BlockingIOError, TLS want-read)
            return False

    def make_body(self, head: RequestHead) -> Body:
        if head.plain:  # no body, nothing expected (take_common)
            return LengthBody(self.rfile, 0)
        kind, length = framing(head)
        expect = head.get("expect")
        continue_hook: Callable[[], None] | None = None
        if expect is not None and head.http11:
            if expect.lower() != "100-continue":
                raise RequestError(417, f"unsupported expectation {expect!r}")
            if kind != "none":
                continue_hook = self._send_continue
        if kind == "chunked":
            return ChunkedBody(self.rfile, continue_hook, self._limits.field_size)
        return LengthBody(self.rfile, length, continue_hook)

    def _send_continue(self) -> None:
        self.wfile.write(CONTINUE)

    # -- the environ --------------------------------------------------------------------------

    def base_environ(self) -> dict[str, Any]:
        """What every request on this connection shares (the server's part: serverside.py)."""
        side = self._side or serverside.of(self.server)
        connection = self.connection
        if side.inet if side.inet is not None else connection.family in _INET:
            local = side.local or connection.getsockname()
            address = self.client_address
            name, port, remote, remote_port = (str(local[0]), str(local[1]), str(address[0]),
                                               str(address[1]))
        else:  # a unix socket: the peer is on this host, and has no address
            name, port, remote, remote_port = "localhost", "80", "127.0.0.1", "0"
        return {"SERVER_NAME": name, "SERVER_PORT": port, "REMOTE_ADDR": remote,
                "REMOTE_PORT": remote_port, **side.shared,
                # Per listener: a TLS one says https whatever the class says.
                "wsgi.url_scheme": "https" if isinstance(connection, ssl.SSLSocket)
                else self.url_scheme,
                "wsgi.errors": sys.stderr}

    def make_environ(self, head: RequestHead, body: Body, base: dict[str, Any]) -> dict[str, Any]:
        authority = host(head)
        path_info, query, target, outside = split_target(head.target, base["SCRIPT_NAME"])
        environ = {**base, "REQUEST_METHOD": head.method, "PATH_INFO": path_info,
                   "QUERY_STRING": query, "REQUEST_URI": target,
                   "SERVER_PROTOCOL": head.version, "wsgi.input": body}
        if outside:
            environ["SCRIPT_NAME"] = ""
        add_fields(environ, head.headers)
        if authority is not None:
            environ["HTTP_HOST"] = authority  # an absolute-form target's authority wins
        if isinstance(body, ChunkedBody):
            environ.pop("CONTENT_LENGTH", None)
        if self._trust is not None:
            forwarded.apply(environ, self._trust)
        return environ

    # -- refusing -----------------------------------------------------------------------------

    def _refuse(self, exc: RequestError) -> None:
        response = Response(self.wfile, head_only=False, http11=True, reusable=False)
        self._error(response, exc.status, str(exc))

    def _error(self, response: Response, code: int, message: str) -> None:
        with contextlib.suppress(ClientGone):
            response.send_error(code, REASONS.get(code, "Error"), message)


def wsgi_handler(app: WSGIApp) -> type[WSGIRequestHandler]:
    """A :class:`WSGIRequestHandler` class serving ``app``."""
    name = getattr(app, "__name__", type(app).__name__)
    attrs = {"application": staticmethod(app), "__module__": __name__,
             "__qualname__": f"WSGIRequestHandler[{name}]"}
    return type(f"WSGIRequestHandler[{name}]", (WSGIRequestHandler,), attrs)
