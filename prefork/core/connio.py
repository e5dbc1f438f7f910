"""The raw stream under a WSGI handler's ``rfile`` in a prefork worker: reads that cost one
system call when the bytes are there, and wait (under the handler's timeout) only when not.

Why.  Between requests the multiplexer keeps a connection blocking (``timeout`` None: a
``MSG_DONTWAIT`` peek is one ``recvfrom``; with a timeout set, Python polls before every read
and a peek would wait for it).  The handler's reads want the opposite: a timeout, so a client
that stops half way through a body cannot hold the worker.  Switching the socket's timeout at
every hand-over costs an ``ioctl`` each way, and a request whose bytes are all there (the
multiplexer hands it over once its head has arrived) never needs the timeout at all.

What.  :class:`ConnIO` reads with ``MSG_DONTWAIT`` while the socket is blocking; only a read
that would wait sets the handler's ``timeout`` on the socket (from then on Python's own
poll-then-read), and the multiplexer puts the socket back to blocking when the handler hands
the connection back (``mux.py``).  :meth:`ConnIO.buffered` tells what ``rfile`` holds
without touching the socket (the multiplexer peeks the socket itself), :func:`nowait` reads
only what has arrived (a read that would wait ends as with a non-blocking socket), and
:meth:`ConnIO.arrived` reads what has arrived into ``rfile``'s buffer (a held connection's next
request, read by its handler in place of the multiplexer's peek: ``mux.py``), and
:meth:`ConnIO.put_back` gives ``rfile`` bytes the handler read off the socket itself
(``apps/plainpath.py``: a head that is not plain, for the general path).
"""

from __future__ import annotations

import contextlib
import io
import socket
from collections.abc import Iterator
from typing import Any

DONTWAIT = socket.MSG_DONTWAIT

WAIT, NOWAIT, BUFFER_ONLY = 0, 1, 2  # ConnIO.reads


class ConnIO(socket.SocketIO):
    """A socket's raw reader whose reads wait only when they must (see the module docstring);
    ``timeout``: the handler's, set on the socket when a read must wait."""

    def __init__(self, sock: socket.socket, timeout: float | None) -> None:
        super().__init__(sock, "rb")
        self.timeout = timeout
        self.reads = WAIT
        self.ended = False  # a read without waiting found the end of the stream
        # The last read took all it asked for: more may wait in the socket, with no edge of
        # the multiplexer's epoll to come for it (see buffered()).
        self.filled = False
        self._back = b""  # bytes the handler read off the socket itself (put_back)

    def put_back(self, rfile: io.BufferedReader, data: bytes, filled: bool) -> None:
        """``data``, read off the socket by the handler itself (a held connection's next
        request: apps/plainpath.py), into ``rfile``'s empty buffer as if ``rfile`` had read it
        (``data`` is no larger than that buffer: the read asked for no more); ``filled``: that
        read took all it asked for (see :attr:`filled`)."""
        self._back = data
        try:
            rfile.peek()
        finally:
            self._back = b""
        self.filled = filled

    def arrived(self, rfile: io.BufferedReader) -> bytes | None:
        """What ``rfile`` (the reader over this stream) holds, after one read of what has
        arrived if it held nothing (nothing is consumed); b"": nothing yet, None: the end of
        the stream, or the connection failed."""
        self.reads, self.ended = NOWAIT, False
        try:
            data = rfile.peek()
        except (OSError, ValueError):  # (reset, or closed)
            return None
        finally:
            self.reads = WAIT
        return None if self.ended and not data else data

    def readinto(self, b: Any) -> int | None:
        if self._back:  # (put_back)
            size = len(self._back)
            b[:size] = self._back
            self._back = b""
            return size
        if self.reads == BUFFER_ONLY:
            return None  # (BufferedReader.peek then returns what it holds, or b"")
        sock = self._sock  # type: ignore[attr-defined]
        if sock.gettimeout() is None:  # as the multiplexer left it: try without waiting
            try:
                got = int(sock.recv_into(b, 0, DONTWAIT))
                if not got:
                    self.ended = True
                self.filled = got == len(b)
                return got
            except (BlockingIOError, InterruptedError):
                if self.reads == NOWAIT:
                    return None
            sock.settimeout(self.timeout)  # (None: the handler has no timeout; it blocks)
        elif self.reads == NOWAIT and sock.gettimeout() != 0.0:
            try:
                now = self._now(sock, b)
            except (BlockingIOError, InterruptedError):
                return None
            self.filled = now == len(b)
            return now
        waited = super().readinto(b)
        self.filled = waited == len(b)
        return waited

    @staticmethod
    def _now(sock: socket.socket, b: Any) -> int | None:
        """A read of what has arrived on a socket with a timeout (switched to 0 and back)."""
        timeout = sock.gettimeout()
        sock.settimeout(0.0)
        try:
            return int(sock.recv_into(b))
        finally:
            sock.settimeout(timeout)


def reader(sock: socket.socket, bufsize: int,
           timeout: float | None) -> tuple[io.BufferedReader, ConnIO]:
    """A buffered reader of ``sock`` over a :class:`ConnIO` (``bufsize`` <= 0: the default
    size), and that raw stream."""
    raw = ConnIO(sock, timeout)
    return io.BufferedReader(raw, bufsize if bufsize > 0 else io.DEFAULT_BUFFER_SIZE), raw


def buffered(rfile: Any, raw: ConnIO) -> bytes:
    """What ``rfile`` holds (nothing is read from the socket), or, where it holds nothing and
    its last read took all it asked for, what one read without waiting adds: the socket may
    hold more, which arrived before that read, and no edge of the multiplexer's epoll will
    come for it."""
    raw.reads = BUFFER_ONLY
    try:
        data = bytes(rfile.peek())
    except ValueError:  # closed
        return b""
    finally:
        raw.reads = WAIT
    if not data and raw.filled:
        data = raw.arrived(rfile) or b""
    return data


@contextlib.contextmanager
def nowait(raw: ConnIO | None, sock: Any) -> Iterator[None]:
    """Reads inside the block take only what has arrived (a read that would wait returns
    None from the raw stream, as from a non-blocking socket's): through ``raw`` where the
    handler has one, else with ``sock`` switched to non-blocking and back."""
    if raw is not None:
        raw.reads = NOWAIT
        try:
            yield
        finally:
            raw.reads = WAIT
        return
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        yield
    finally:
        sock.settimeout(timeout)
