"""A worker's first steps with a new connection, kept cheap: the accept, the first look at
whether it has work (before any bookkeeping), and the listening socket's options.  Used by the
multiplexer (``mux.py``, where the reasons are)."""

from __future__ import annotations

import contextlib
import enum
import math
import re
import socket
import socketserver
import ssl
from collections.abc import Callable
from typing import Any

from prefork.core.conn import Conn
from prefork.core.keepalive import Ready
from prefork.core.tls import ReadAheadSSLSocket

MAX_HEAD = 64 * 1024  # bytes of request head; more is answered 431
PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT
# A request body of up to this many bytes (Content-Length) is waited for here too, so a client
# that sends its head and then drips its body (a slow POST) holds no handler either; a larger
# one, a chunked one, or one whose client waits for "100 Continue" goes to the handler with the
# head.  Small enough to arrive within client_timeout on a slow link (16 KiB in 5 s: 3.2 KB/s).
BODY_WAIT = 16 * 1024
_LENGTH = re.compile(rb"\ncontent-length[ \t]*:[ \t]*([0-9]{1,9})[ \t]*\r?\n", re.IGNORECASE)
_EXPECT = re.compile(rb"\nexpect[ \t]*:", re.IGNORECASE)


def request_end(data: bytes | bytearray, end: int) -> int:
    """Where the request at the start of ``data[:end]`` ends -- its head, and a body of at most
    BODY_WAIT bytes announced by Content-Length -- or -1 while its head has not ended.  The
    result may lie beyond ``end``: the body is still coming.  (A peek, not a parse: the
    handler's own parser judges the request.)"""
    head = data.find(b"\r\n\r\n", 0, end)
    if head >= 0:
        head += 4
    else:
        head = data.find(b"\n\n", 0, end)
        if head < 0:
            return -1
        head += 2
    length = _LENGTH.search(data, 0, head)
    if length is None:
        return head
    size = int(length.group(1))
    if size > BODY_WAIT or head + size > MAX_HEAD or _EXPECT.search(data, 0, head):
        return head
    return head + size


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
    return 0 <= request_end(buf, size) <= size


def accept_function(server: socketserver.BaseServer) -> Callable[[], tuple[Any, Any]]:
    """``server.get_request``, or, where that is socketserver's own ``TCPServer.get_request``
    on a plain socket, the same accept without the Python layers of ``socket.accept`` (its
    ``family`` and ``type`` properties build enums on every call)."""
    lsock = getattr(server, "socket", None)
    if (type(server).get_request is not socketserver.TCPServer.get_request
            or type(lsock) is not socket.socket):
        return server.get_request
    assert lsock is not None
    raw_accept = lsock._accept  # type: ignore[attr-defined]
    family, kind, proto = int(lsock.family), int(lsock.type), lsock.proto
    new_socket, default_timeout, timeout = socket.socket, socket.getdefaulttimeout, lsock.gettimeout

    def accept() -> tuple[socket.socket, Any]:
        fd, address = raw_accept()
        sock = new_socket(family, kind, proto, fileno=fd)
        if default_timeout() is None and timeout():  # as socket.accept does
            sock.setblocking(True)
        return sock, address

    return accept


def tune_listener(sock: socket.socket, ready: Ready, client_timeout: float) -> None:
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
            sock.setsockopt(socket.IPPROTO_TCP, defer, max(1, math.ceil(client_timeout)))


class Check(enum.Enum):
    """What a look at a waiting connection found."""

    READY = "ready"
    MORE = "more"  # wait for more
    EOF = "eof"
    TOO_LARGE = "too large"


_raw_recv_into = socket.socket.recv_into  # on an SSLSocket: the ciphertext, which may be peeked


def look(conn: Conn, buf: bytearray) -> tuple[Check, bool]:
    """Whether the waiting ``conn`` has work for its handler (peeked, nothing consumed), and
    whether part of a request head arrived (it is then PARTIAL).  ``buf`` holds at least
    MAX_HEAD bytes."""
    buffered = conn.resumable.buffered() if conn.resumable is not None else b""
    if conn.tls:
        if conn.ready is Ready.HEAD and isinstance(conn.sock, ReadAheadSSLSocket):
            return read_head(conn.sock, buffered)
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
    if stop < 0 and end >= MAX_HEAD:
        return Check.TOO_LARGE, False
    if size == 0:
        return Check.EOF, False
    return Check.MORE, end > 0


def read_head(sock: ReadAheadSSLSocket, buffered: bytes) -> tuple[Check, bool]:
    """:func:`look` for a TLS connection whose handler waits for a complete request head.
    Encrypted bytes cannot be peeked at, so the decrypted ones are read here, without blocking,
    into ``sock.ahead`` (which the socket's reads serve first) until the head is complete (after
    ``buffered``, which the handler holds), MAX_HEAD bytes, EOF or nothing more to read yet --
    all that: the connection is edge-triggered, and OpenSSL may hold a record read whole."""
    ahead = sock.ahead
    if ahead is None:
        ahead = sock.ahead = bytearray()
    done = _complete(buffered, ahead)
    eof = False
    if not done:
        sock.settimeout(0.0)
        try:
            while (room := MAX_HEAD - len(buffered) - len(ahead)) > 0:
                try:
                    chunk = sock.read_more(room)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):  # an event comes
                    break
                except OSError:  # the TLS stream failed: nothing to answer
                    return Check.EOF, False
                if not chunk:
                    eof = True
                    break
                ahead += chunk
                if _complete(buffered, ahead):
                    done = True
                    break
        finally:
            sock.settimeout(None)  # blocking, as the handler gets it
    if done:
        return Check.READY, False
    size = len(buffered) + len(ahead)
    if size >= MAX_HEAD:
        return Check.TOO_LARGE, False
    return (Check.EOF if eof else Check.MORE), size > 0


def requests_here(conn: Conn, buf: bytearray) -> int:
    """How many request heads ``conn`` has received and its handler not yet read (in the
    handler's buffer, the TLS read-ahead, the socket): a graceful stop serves those and no
    more.  (A head-like run inside a body counts too: this is a bound, not a parse.)"""
    data = bytes(conn.resumable.buffered()) if conn.resumable is not None else b""
    if conn.tls:
        data += bytes(getattr(conn.sock, "ahead", None) or b"")
    else:
        try:
            size = _raw_recv_into(conn.sock, buf, MAX_HEAD, PEEK)
        except OSError:
            size = 0
        data += bytes(buf[:size])
    return data.count(b"\r\n\r\n") or data.count(b"\n\n")


def _complete(buffered: bytes, ahead: bytearray) -> bool:
    """Whether a request (see :func:`request_end`) is complete within ``buffered + ahead``."""
    data = buffered + ahead if buffered else ahead
    end = min(len(data), MAX_HEAD)
    return 0 <= request_end(data, end) <= end
