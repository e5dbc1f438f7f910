"""A request body an ``http.server`` handler did not read (issue 19, point 2).

Why.  ``BaseHTTPRequestHandler`` leaves the body to the handler's method: one that answers
without reading it (a redirect, a 404, an error) leaves the body in the connection, where the
next request would begin.  Kept alive, the connection then waited in the multiplexer with the
body taken for the start of a request head: a dripped body earned a ``408`` seconds after its
``200``, and a body that looks like a request (``GET /admin ...``) was served as one.

What.  For the handlers the worker takes over (``KeepAliveHTTPMixIn``) the bytes read from the
socket are counted (:class:`CountingIO` under ``rfile``), and where the parsed head announced a
body the position of its start is noted.  After the response, what the handler left of a
``Content-Length`` body is dropped if it has arrived already (up to ``DRAIN_LIMIT`` bytes, read
without waiting) and the connection stays open; a body still on its way, a larger one, or a
chunked one the handler did not touch closes the connection after the response instead -- never
read at the client's pace inside the handler.
"""

from __future__ import annotations

import io
import socket
import ssl
from typing import Any

DRAIN_LIMIT = 1 << 20  # bytes of an unread body dropped to keep the connection


class CountingIO(socket.SocketIO):
    """The raw stream under a handler's ``rfile``: ``count`` bytes read from the socket."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock, "rb")
        self.count = 0

    def readinto(self, b: Any) -> int | None:
        n = super().readinto(b)
        if n:
            self.count += n
        return n


def counting_rfile(sock: socket.socket, rfile: Any, bufsize: int) -> io.BufferedReader:
    """A buffered reader of ``sock`` over :class:`CountingIO`, in place of ``rfile`` (closed:
    nothing was read from it yet)."""
    rfile.close()
    return io.BufferedReader(CountingIO(sock), bufsize if bufsize > 0 else io.DEFAULT_BUFFER_SIZE)


def _ahead(rfile: io.BufferedReader, sock: socket.socket) -> bytes:
    """What ``rfile`` holds, and what the socket has now, without waiting (consumes nothing)."""
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        return bytes(rfile.peek())
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return b""
    except OSError:
        return b""
    finally:
        sock.settimeout(timeout)


def position(rfile: Any, sock: socket.socket) -> int | None:
    """How many bytes the handler has consumed from the connection (None: not counted)."""
    raw = getattr(rfile, "raw", None)
    if not isinstance(raw, CountingIO):
        return None
    return raw.count - len(_ahead(rfile, sock))


def announced(headers: Any) -> int:
    """The body a request head announces: its Content-Length, -1 for any other framing
    (Transfer-Encoding), 0 for none."""
    if headers.get("Transfer-Encoding") is not None:
        return -1
    length = headers.get("Content-Length")
    if length is None:
        return 0
    try:
        return max(0, int(length))
    except ValueError:
        return -1


def drop_unread(rfile: Any, sock: socket.socket, size: int, start: int) -> bool:
    """After the response to a request whose body of ``size`` bytes (-1: framed otherwise)
    began at ``start``: drop what the handler left of it if it has arrived.  True: the
    connection may carry another request; False: close it after the response."""
    now = position(rfile, sock)
    if now is None:
        return True
    if size < 0:  # chunked: where it ends is the handler's business, if it read any of it
        return now > start
    left = size - (now - start)
    if left <= 0:
        return True
    if left > DRAIN_LIMIT:
        return False
    while left > 0:
        data = _ahead(rfile, sock)
        if not data:
            return False  # still on its way: not waited for
        take = min(len(data), left)
        rfile.read(take)
        left -= take
    return True
