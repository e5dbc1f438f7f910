"""A worker's first steps with a new connection, kept cheap: the accept, the first look at
whether it has work (before any bookkeeping), and the listening socket's options.  Used by the
multiplexer (``mux.py``, where the reasons are)."""

from __future__ import annotations

import _socket
import contextlib
import enum
import fcntl
import http
import math
import os
import socket
import socketserver
import ssl
from collections.abc import Callable
from typing import Any, Protocol

from prefork.core.conn import Conn
from prefork.core.httplimits import MAX_HEAD, HeadLimits, of
from prefork.core.httppeek import CONTENT_LENGTH, EMPTY, heads_in, request_end
from prefork.core.keepalive import Ready, handler_class
from prefork.core.stdfds import ensure_open
from prefork.core.tls import ReadAheadSSLSocket

PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


def head_arrived(request: socket.socket, buf: bytearray) -> bool:
    """The first look at a new plain (not TLS) connection whose handler waits for a complete
    HTTP request head: True if it goes to the handler now.  False means "not sure": the
    multiplexer then checks it as any waiting connection (the rare path: one more peek).
    ``buf`` holds at least MAX_HEAD bytes.  (For a handler that waits for any data the
    multiplexer peeks one byte itself: that is every raw connection's path.)"""
    try:
        size = request.recv_into(buf, MAX_HEAD, PEEK)
    except OSError:
        return False
    # The common head first: it starts at once, has ended, and nothing in it or after it
    # says Content-Length, so request_end is where its head ends (within size) -- without it.
    if ((buf[0] not in EMPTY and buf.find(b"\r\n\r\n", 0, size) >= 0
            and CONTENT_LENGTH.search(buf, 0, size) is None)
            or 0 <= request_end(buf, size) <= size):
        PEEKED.sock, PEEKED.buf, PEEKED.size = request, buf, size
        return True
    return False


class Peeked:
    """What :func:`head_arrived` saw last, for a handler that serves it from there
    (:class:`ServesClosing`, through ``dispatch.request_path``): the connection ``sock``
    and its first ``size`` bytes, peeked into ``buf``.  The worker's loop thread's: only a
    single-threaded worker's dispatch, which runs right after the look in that thread, reads
    it, and takes ``sock`` out as it does."""

    __slots__ = ("buf", "size", "sock")

    def __init__(self) -> None:
        self.sock: Any = None
        self.buf = bytearray()
        self.size = 0


PEEKED = Peeked()


class ServesClosing(Protocol):
    """A handler class that serves a new connection's only request itself, without an
    instance run for the connection (the WSGI handler: apps/closing.py).  closing_path(server):
    ``serve(sock, address, buf, size)`` or None; serve() is given the head the accept's peek saw
    (``buf[:size]``, not read yet) and returns True once it served the request (the caller
    closes the connection, or leaves it to the outbox), False having read nothing (the usual
    path serves it)."""

    def closing_path(self, server: Any) -> Callable[[Any, Any, bytearray, int], bool] | None:
        ...


def accept_function(server: socketserver.BaseServer) -> Callable[[], tuple[Any, Any]]:
    """``server.get_request``, or, where that is socketserver's own ``TCPServer.get_request``
    on a plain socket, the same accept without the Python layers of ``socket.accept`` (its
    ``family`` and ``type`` properties build enums on every call), which also keeps a new
    connection off fds 0-2 without a look before each accept (:func:`moved_up`)."""
    lsock = getattr(server, "socket", None)
    if (type(server).get_request is not socketserver.TCPServer.get_request
            or type(lsock) is not socket.socket):
        return server.get_request
    assert lsock is not None
    raw_accept = lsock._accept  # type: ignore[attr-defined]
    family, kind, proto = int(lsock.family), int(lsock.type), lsock.proto
    default_timeout, timeout = socket.getdefaulttimeout, lsock.gettimeout
    # socket.socket(family, kind, proto, fileno=fd) without its Python __init__'s frame and
    # keywords: the C socket's init, then the two attributes that __init__ sets.
    make, init, kind_of = socket.socket.__new__, _socket.socket.__init__, socket.socket

    def accept() -> tuple[socket.socket, Any]:
        fd, address = raw_accept()
        if fd <= 2:  # one of fds 0-2 was closed: the socket goes above them (stdfds.py)
            fd = moved_up(fd)
        sock = make(kind_of)
        init(sock, family, kind, proto, fd)
        sock._io_refs, sock._closed = 0, False  # type: ignore[attr-defined]
        if default_timeout() is None and timeout():  # as socket.accept does
            sock.setblocking(True)
        return sock, address

    accept.keeps_std_fds = True  # type: ignore[attr-defined]
    return accept


def keeps_std_fds(accept: Callable[[], tuple[Any, Any]]) -> bool:
    """Whether ``accept`` (from :func:`accept_function`) never leaves a connection on fds
    0-2 by itself; for any other, the caller reopens closed ones before accepting."""
    return getattr(accept, "keeps_std_fds", False)


def moved_up(fd: int) -> int:
    """A new connection's ``fd`` that took one of fds 0-2 (a handler closed it): moved above
    them, and the closed ones reopened (``stdfds.ensure_open``)."""
    try:
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    finally:
        os.close(fd)
    ensure_open()
    return high


def tune_listener(sock: socket.socket, ready: Ready, head_wait: float) -> None:
    """TCP_NODELAY (inherited by accepted sockets: keep-alive replies are not held back by
    Nagle against delayed ACK) and, when the handler waits for the client anyway,
    TCP_DEFER_ACCEPT (the kernel keeps a connection until its first bytes arrive)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    defer = getattr(socket, "TCP_DEFER_ACCEPT", None)
    if defer is not None and ready is not Ready.ACCEPTED:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, defer, max(1, math.ceil(head_wait)))


class Check(enum.Enum):
    """What a look at a waiting connection found: a request for the handler, nothing yet, the
    end of the stream, or a partial head refused (the status to answer, then close)."""

    READY = "ready"
    MORE = "more"  # wait for more
    EOF = "eof"
    BAD = 400
    LINE_TOO_LONG = 414
    TOO_LARGE = 431
    VERSION = 505


REFUSED = {check.value: check for check in Check if isinstance(check.value, int)}
# What the multiplexer answers a head that did not end in time, and one refused.
TIMEOUT_REPLY = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                 b"Content-Length: 0\r\n\r\n")
# A partial head refused (accepting.judge): the status the handler's parser gives it.
REFUSAL_REPLIES = {
    check: (f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\nConnection: close\r\n"
            "Content-Length: 0\r\n\r\n").encode("ascii")
    for status, check in REFUSED.items()
}


def judge(conn: Conn | None, server: Any, data: bytes | bytearray, end: int) -> Check:
    """A partial head (``data[:end]``, not ended) for ``server``'s handler: refused already by
    the handler's parser (its ``judge_head(data, limits)``: the status it answers once it reads
    this far, 0 for none yet), else MORE; a full buffer is refused in any case (431).

    The parser runs again only when its answer may have changed since ``conn``'s last look: a
    line more, or the last line past a limit.  So a client that drips its head a byte at a
    time costs a count of line ends per byte, not a parse of the whole head."""
    if end >= MAX_HEAD:
        return REFUSED.get(_judged(server, data, end), Check.TOO_LARGE)
    factory = getattr(server, "RequestHandlerClass", None)
    if getattr(handler_class(factory) or factory, "judge_head", None) is None:
        return Check.MORE
    limits = _limits(server)
    tail = end - data.rfind(b"\n", 0, end) - 1
    key = (data.count(b"\n", 0, end), tail > limits.request_line, tail > limits.field_size)
    if conn is not None:
        if key == conn.judged:
            return Check.MORE
        conn.judged = key
    status = _judged(server, data, end)
    return REFUSED.get(status, Check.BAD) if status else Check.MORE


def _judged(server: Any, data: bytes | bytearray, end: int) -> int:
    factory = getattr(server, "RequestHandlerClass", None)
    judge_head = getattr(handler_class(factory) or factory, "judge_head", None)
    return judge_head(bytes(data[:end]), _limits(server)) if judge_head is not None else 0


def _limits(server: Any) -> HeadLimits:
    """The limits for ``server``'s handler: its ``head_limits`` where unset (httplimits.py)."""
    factory = getattr(server, "RequestHandlerClass", None)
    own = getattr(handler_class(factory) or factory, "head_limits", None)
    return of(server, own) if own is not None else of(server)


_socket_recv_into = socket.socket.recv_into  # on an SSLSocket: the ciphertext, which may be peeked


def _raw_recv_into(sock: Any, buf: bytearray, size: int, flags: int) -> int:
    """Peek into ``buf`` past any TLS layer; a request that is not a socket (a wrapper some
    ``get_request()`` returned, e.g. a logging proxy) is asked through its own ``recv_into``."""
    if isinstance(sock, socket.socket):
        return _socket_recv_into(sock, buf, size, flags)
    return int(sock.recv_into(buf, size, flags))


def look(conn: Conn, buf: bytearray) -> tuple[Check, bool]:
    """Whether the waiting ``conn`` has work for its handler (peeked, nothing consumed), and
    whether part of a request head arrived (it is then PARTIAL).  ``buf`` holds at least
    MAX_HEAD bytes."""
    buffered = conn.resumable.buffered() if conn.resumable is not None else b""
    if conn.tls:
        if conn.ready is Ready.HEAD and isinstance(conn.sock, ReadAheadSSLSocket):
            return read_head(conn.sock, buffered, conn)
        if buffered or conn.sock.pending():
            return Check.READY, False
    head = conn.ready is Ready.HEAD and not conn.tls
    try:
        size = _raw_recv_into(conn.sock, buf, MAX_HEAD if head else 1, PEEK)
    except (BlockingIOError, InterruptedError):
        size = -1
    except OSError:
        return Check.EOF, False
    if not head:
        if buffered or size > 0:
            return Check.READY, False
        return (Check.EOF if size == 0 else Check.MORE), False
    if buffered:
        data: bytes | bytearray = buffered + buf[:max(0, size)]
        end = len(data)
    else:
        data, end = buf, max(0, size)
    stop = request_end(data, end)
    if 0 <= stop <= end:
        return Check.READY, False
    if size == 0:
        return Check.EOF, False
    if stop < 0 and end > 0:
        check = judge(conn, conn.server, data, end)
        if check is not Check.MORE:
            return check, False
    return Check.MORE, end > 0


def read_head(sock: ReadAheadSSLSocket, buffered: bytes,
              conn: Conn | None = None) -> tuple[Check, bool]:
    """:func:`look` for a TLS connection whose handler waits for a complete request head.
    Encrypted bytes cannot be peeked at, so the decrypted ones are read here, without blocking,
    into ``sock.ahead`` (which the socket's reads serve first) until the head is complete (after
    ``buffered``, which the handler holds), MAX_HEAD bytes, EOF or nothing more to read yet --
    all that: the connection is edge-triggered, and OpenSSL may hold a record read whole."""
    ended = _read_ahead(sock, buffered, until_complete=True)
    if ended == "complete":
        return Check.READY, False
    if ended == "failed":  # the TLS stream failed: nothing to answer
        return Check.EOF, False
    if ended == "eof":
        return Check.EOF, False
    data = buffered + (sock.ahead or b"")
    if not data:
        return Check.MORE, False
    if request_end(data, min(len(data), MAX_HEAD)) < 0:  # (else: waiting for a small body)
        check = judge(conn, conn.server if conn else None, data, min(len(data), MAX_HEAD))
        if check is not Check.MORE:
            return check, False
    return Check.MORE, True


def _read_ahead(sock: ReadAheadSSLSocket, buffered: bytes, until_complete: bool) -> str:
    """Read what the TLS stream has, decrypted, into ``sock.ahead`` without blocking, up to
    MAX_HEAD bytes after ``buffered``; how it ended: "complete" (a request is there, if
    ``until_complete``), "eof", "failed", or "wait" (nothing more yet, or no room)."""
    ahead = sock.ahead
    if ahead is None:
        ahead = sock.ahead = bytearray()
    if until_complete and _complete(buffered, ahead):
        return "complete"
    sock.settimeout(0.0)
    try:
        while (room := MAX_HEAD - len(buffered) - len(ahead)) > 0:
            try:
                chunk = sock.read_more(room)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):  # an event comes
                return "wait"
            except OSError:
                return "failed"
            if not chunk:
                return "eof"
            ahead += chunk
            if until_complete and _complete(buffered, ahead):
                return "complete"
        return "wait"
    finally:
        sock.settimeout(None)  # blocking, as the handler gets it


def requests_here(conn: Conn, buf: bytearray) -> int:
    """How many request heads ``conn`` has received and its handler not yet read (in the
    handler's buffer, the TLS read-ahead, the socket): a graceful stop serves those and no
    more.  (A head-like run inside a body counts too: this is a bound, not a parse.)"""
    data = bytes(conn.resumable.buffered()) if conn.resumable is not None else b""
    if isinstance(conn.sock, ReadAheadSSLSocket):  # what OpenSSL and the kernel hold, too
        _read_ahead(conn.sock, data, until_complete=False)
        data += bytes(conn.sock.ahead or b"")
    elif not conn.tls:  # (another TLS socket: what the handler has buffered is all we know)
        try:
            size = _raw_recv_into(conn.sock, buf, MAX_HEAD, PEEK)
        except OSError:
            size = 0
        data += bytes(buf[:size])
    return heads_in(data)


def _complete(buffered: bytes, ahead: bytearray) -> bool:
    """Whether a request (see :func:`request_end`) is complete within ``buffered + ahead``."""
    data = buffered + ahead if buffered else ahead
    end = min(len(data), MAX_HEAD)
    return 0 <= request_end(data, end) <= end
