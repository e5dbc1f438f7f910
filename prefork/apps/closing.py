"""A new connection whose only request is plain and asks to close, served without a handler
object of its own (issue 20: a connection per request).

Why.  A client that opens a connection per request (``Connection: close``, or HTTP/1.0) pays
for a whole :class:`~prefork.apps.wsgi.WSGIRequestHandler` each time: the object, its
``setup()`` (a reader, a writer), the per-connection reads of its server's settings in
``handle()``, ``finish()`` closing both files -- about a third of such a request's
instructions, for a connection that carries one request and is gone.  Here the worker's first
look at the connection (``core/accepting.head_arrived``: the peek that saw the whole head) is
the head: if it is plain (``apps/plainpath.py``: one head of the common shape, no body,
nothing after it) and says close, its bytes are read off, its environ made and the
application run by the methods of one handler object per listener that is never run as a
handler (made with ``__new__``; its per-connection attributes set before each use), and the
connection is closed (``dispatch.request_path``: no file and no child has it, so ``close()``
sends the FIN that socketserver's ``shutdown(SHUT_WR)`` would).  Anything else is declined
before a byte is read, and takes the usual path: a handler built for the connection, which
reads the head itself.  The response's writes are one ``send`` each (:class:`Writer`).

What it keeps.  The environ is the one ``_plain`` makes on a held connection (checked against
the general path byte by byte in tests/wsgi/test_plainpath.py), with this connection's
``REMOTE_ADDR``/``REMOTE_PORT`` (and its own local address where the listener's is a wildcard);
the response, the errors (500, a client gone), the access log and ``wsgi.input``'s close are
``WSGIRequestHandler._run``'s; a response the client does not read at once is left in the
worker's outbox (``core/outbox.py``), as a handler's is.  Only a class that changes none of the
handler's methods gets this path (the tunables may differ: they are read from the class), on a
prefork server whose heads are read by the grammar (``http_parser``), in a single-threaded
worker (``core/dispatch.request_path``).
"""

from __future__ import annotations

import io
import socket
import sys
from collections.abc import Callable
from typing import Any, cast

from prefork.apps import serverside
from prefork.apps.fasthead import read_head_grammar
from prefork.apps.response import Response
from prefork.core.outbox import OutboxWriter
from prefork.core.servers import PreforkMixIn

DONTWAIT = socket.MSG_DONTWAIT
SEND = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL  # (a reset client is an error, never SIGPIPE)
# serve(sock, address, buf, size) -> True once the request in buf[:size] was served (the
# connection still to be closed by the caller), False: declined, nothing read.
ServeClosing = Callable[[socket.socket, Any, bytearray, int], bool]

# What a class made by wsgi_handler(), or a subclass that only sets tunables, has of its own.
_DATA = frozenset({"__module__", "__qualname__", "__doc__", "__dict__", "__weakref__",
                   "__annotations__", "__parameters__", "__orig_bases__", "__firstlineno__",
                   "__static_attributes__", "application",
                   "timeout", "idle_timeout", "max_keepalive_requests", "drain_limit",
                   "url_scheme", "buffer_chunked", "max_buffered_body", "rbufsize"})


def unchanged(cls: type, base: type) -> bool:
    """Whether ``cls`` (a subclass of ``base``) changes nothing of ``base`` but its tunables."""
    for klass in cls.__mro__:
        if klass is base:
            return True
        if not _DATA.issuperset(vars(klass)):
            return False
    return False


def closing_path(cls: Any, base: type, server: Any) -> ServeClosing | None:
    """The function serving ``server``'s new connections whose only request is plain and says
    close, for the handler class ``cls`` (a subclass of the WSGI handler ``base``); None where
    the usual path must serve every one (see the module docstring)."""
    if (not unchanged(cls, base) or cls.wbufsize != 0 or cls.disable_nagle_algorithm
            or not isinstance(server, PreforkMixIn)):
        return None
    side = serverside.of(server)
    if side.read_head is not read_head_grammar or not side.inet or not side.concurrent:
        return None
    proto = cls.__new__(cls)  # (its methods serve each request; it is never run as a handler)
    proto.server, proto._side, proto._limits = server, side, side.limits
    proto._read_head, proto._raw = side.read_head, None
    full = cls.rbufsize if cls.rbufsize > 0 else io.DEFAULT_BUFFER_SIZE
    local = side.local
    # base_environ()'s keys, in its order (this connection's address goes in place).
    template: dict[str, Any] = {
        "SERVER_NAME": "" if local is None else str(local[0]),
        "SERVER_PORT": "" if local is None else str(local[1]),
        "REMOTE_ADDR": "", "REMOTE_PORT": "", **side.shared,
        "wsgi.url_scheme": cls.url_scheme, "wsgi.errors": sys.stderr}
    proto._base, proto._joins = template, False  # (the handler's own base: no field key)
    timeout = cls.timeout
    trust, application = side.trust, cls.application
    peers = trust.peers

    def serve(sock: socket.socket, address: Any, buf: bytearray, size: int) -> bool:
        if size >= full or buf.find(b"\r\n\r\n", 0, size) != size - 4:
            return False  # (more than one head's worth, or bytes after it: not plain)
        # trust.peer(address), its table read here first (an inet peer's host is a str).
        trusted = peers.get(address[0])
        if trusted is None:
            trusted = trust.peer(address)
        proto._trust = trust if trusted else None
        environ = proto._plain(buf[:size], size, address,
                               sock.getsockname() if local is None else None)
        if environ is None or not proto._closing:
            return False
        environ["wsgi.errors"] = sys.stderr  # (base_environ reads it per connection)
        try:
            sock.recv(size, DONTWAIT)  # (what the peek saw: the request is taken)
        except OSError:
            return True  # (the client is gone: nothing to answer, the connection ends)
        proto.request = proto.connection = sock
        proto.client_address = address
        # A writer of its own: a write() the application kept fails on this closed socket
        # (ClientGone), never reaching a later connection's.
        proto.wfile = wfile = cast(io.BufferedIOBase, Writer(sock, timeout))
        app = application if application is not None else server.get_app()  # type: ignore[attr-defined]
        response = Response(wfile, proto._head_only, proto._http11, False, sock)
        try:
            proto._run(app, environ, None, response, environ["REQUEST_METHOD"],
                       environ["REQUEST_URI"])
        finally:
            proto.request = proto.connection = proto.client_address = proto.wfile = None
        return True

    return serve


class Writer:
    """The response's ``wfile``: a write the client takes at once is one ``send``; from the
    first that it does not (or a file to send), an OutboxWriter takes over, and what is left
    is sent by the worker after the request (core/outbox.py), as from a handler's.  (An
    OutboxWriter, and the outbox's parts, are made only for a response that needs them.)"""

    __slots__ = ("rest", "sock", "timeout")

    def __init__(self, sock: Any, timeout: float | None) -> None:
        self.sock, self.timeout = sock, timeout
        self.rest: OutboxWriter | None = None

    def flush(self) -> None:
        pass  # (nothing is buffered here)

    def write(self, data: Any) -> int:
        rest = self.rest
        if rest is None:
            if type(data) is bytes:
                try:
                    sent: int = self.sock.send(data, SEND)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                if sent == len(data):
                    return sent
                data = memoryview(data)[sent:]
            else:
                sent = 0
            self.rest = rest = OutboxWriter(self.sock, self.timeout)
            return sent + rest.write(data)
        return rest.write(data)

    def send_file(self, fd: int, offset: int, count: int) -> None:
        if self.rest is None:
            self.rest = OutboxWriter(self.sock, self.timeout)
        self.rest.send_file(fd, offset, count)
