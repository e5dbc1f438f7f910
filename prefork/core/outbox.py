"""The way out: a response the client does not read fast enough is sent by the multiplexer.

Why.  A socketserver handler writes its response with blocking calls (``wfile.write`` is
``sendall``), so a client that reads slowly -- or not at all -- keeps the handler, and with it
a whole worker, for as long as it likes: fifty clients reading 2 MB responses at 1 KB/s stopped
a two-worker pool.  The way in has the same problem and the multiplexer solves it by waiting for
the request before the handler runs (``mux.py``); the way out is solved the same way, after the
handler: what the socket does not take at once is queued here, the handler returns, and the
worker's multiplexer sends the rest as the client reads.

How.

* **The handler's writes** go through an :class:`OutboxWriter` (its ``wfile``, installed by
  ``keepalive.outbox_writer`` only in a prefork worker, where the connection may be held, so
  every other mode keeps its ``sendall``).  A write is sent without waiting; what the socket
  does not take goes to the connection's :class:`Outbox`, and every later write queues behind
  it (sending what the socket takes meanwhile), so the bytes leave in order.  The common
  case -- a response the socket buffer takes whole -- costs one non-blocking ``send``.
* **Bounded.**  An outbox keeps up to ``MEMORY`` bytes in memory and spools the rest to an
  unlinked temporary file, which a plain socket then sends with ``sendfile``.  A file body
  (``wsgi.file_wrapper``, :meth:`OutboxWriter.send_file`) is not copied at all: the outbox
  keeps a dup of its fd and the range to send.  Past
  ``SPOOL_LIMIT`` queued bytes a write waits for the client (within the socket's timeout),
  as it always did: an endless stream cannot fill the disk.
* **Handed over.**  An outbox with bytes in it is registered in :data:`PENDING` under its
  socket.  When the handler returns, the worker's dispatch sees it: the connection is not shut
  down but kept (a handler that closes it anyway is given :data:`CLOSING` as its holder), and
  the multiplexer sends the rest on ``EPOLLOUT`` within ``send_timeout`` (one deadline for the
  whole remainder: a client trickling its reads buys no time), then serves the next request of
  a kept-alive connection, or closes.  A connection that closes for any other reason drops its
  outbox (:func:`discard`).
* **TLS.**  OpenSSL wants a write that would block retried with the same bytes: pieces are at
  most ``TLS_PIECE`` bytes, cut from the head of the queue, which only ever shrinks by what was
  sent, so a retry sends the same piece.

Invariant: an outbox is written by the handler's thread while its connection is in the handler
and sent by the multiplexer's thread while it is not; never both (the connection is in one
place at a time).
"""

from __future__ import annotations

import errno
import io
import os
import select
import socket
import ssl
import tempfile
import time
from collections import deque
from typing import IO, Any

MEMORY = 256 * 1024  # bytes an outbox keeps in memory; more goes to a temporary file
SPOOL_LIMIT = 64 * 1024 * 1024  # queued bytes past which a write waits for the client
BLOCK = 64 * 1024  # read from the spool file at a time (TLS)
SENDFILE_BLOCK = 1024 * 1024
TLS_PIECE = 16 * 1024  # one TLS record
NOSIGNAL = socket.MSG_NOSIGNAL
DONTWAIT = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL


class _Range:
    """Bytes ``at``..``end`` of the file ``fd`` (the spool, or a file body's own dup)."""

    __slots__ = ("at", "end", "fd", "owned")

    def __init__(self, fd: int, at: int, end: int, owned: bool) -> None:
        self.fd, self.at, self.end, self.owned = fd, at, end, owned


class Outbox:
    """The bytes of one connection written and not yet sent, in order: pieces in memory and
    ranges of files.  Methods: append(data), append_file(fd, offset, count), send(sock) ->
    True once empty, wait(sock, down_to, timeout), close(); ``size`` bytes in all."""

    __slots__ = ("memory", "parts", "ranged", "spool", "spool_end")

    def __init__(self) -> None:
        self.parts: deque[memoryview | _Range] = deque()
        self.memory = 0  # bytes of the parts in memory (at most MEMORY + BLOCK)
        self.ranged = 0  # bytes of the file ranges
        self.spool: IO[bytes] | None = None  # an unlinked temporary file, made when needed
        self.spool_end = 0

    @property
    def size(self) -> int:
        return self.memory + self.ranged

    def append(self, data: bytes | memoryview) -> None:
        size = len(data)
        if self.memory + size <= MEMORY:
            self.parts.append(memoryview(bytes(data)))
            self.memory += size
            return
        if self.spool is None:
            self.spool = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        fd, start, view = self.spool.fileno(), self.spool_end, memoryview(data)
        while view:
            written = os.pwrite(fd, view, self.spool_end)
            self.spool_end += written
            view = view[written:]
        last = self.parts[-1] if self.parts else None
        if isinstance(last, _Range) and last.fd == fd and last.end == start:
            last.end = self.spool_end
        else:
            self.parts.append(_Range(fd, start, self.spool_end, owned=False))
        self.ranged += size

    def append_file(self, fd: int, offset: int, count: int) -> None:
        """``count`` bytes of the file ``fd`` from ``offset`` (a dup is kept: the caller may
        close its file)."""
        if count > 0:
            self.parts.append(_Range(os.dup(fd), offset, offset + count, owned=True))
            self.ranged += count

    def send(self, sock: Any) -> bool:
        """Send what ``sock`` takes now, without waiting; True once nothing is left.  A
        blocking plain socket is sent to with MSG_DONTWAIT, any other must be non-blocking
        (or have a timeout, which makes Python's socket non-blocking underneath)."""
        tls = isinstance(sock, ssl.SSLSocket)
        parts = self.parts
        while parts:
            part = parts[0]
            if isinstance(part, _Range):
                if not tls and sock.gettimeout() is not None:  # a non-blocking fd: sendfile
                    if not self._sendfile(sock, part):
                        return False
                else:
                    self._read_block(part)
                continue
            piece = part[:TLS_PIECE] if tls else part
            sent = send_some(sock, piece, tls)
            if not sent:
                return False
            self.memory -= sent
            if sent == len(part):
                parts.popleft()
            else:
                parts[0] = part[sent:]
        if self.spool is not None and self.spool_end:
            os.ftruncate(self.spool.fileno(), 0)  # all sent: the spool starts again
            self.spool_end = 0
        return True

    def wait(self, sock: Any, down_to: int, timeout: float | None) -> None:
        """Send, waiting for the client, until at most ``down_to`` bytes are left (TimeoutError
        after ``timeout`` seconds; None: no limit)."""
        until = None if timeout is None else time.monotonic() + timeout
        poll = select.poll()
        poll.register(sock.fileno(), select.POLLOUT | select.POLLIN)
        while self.size > down_to:
            if self.send(sock) or self.size <= down_to:
                return
            left = None if until is None else until - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError("the client stopped reading")
            poll.poll(None if left is None else max(1, int(left * 1000)))

    def close(self) -> None:
        for part in self.parts:
            if isinstance(part, _Range) and part.owned:
                os.close(part.fd)
        self.parts.clear()
        self.memory = self.ranged = 0
        if self.spool is not None:
            self.spool.close()
            self.spool = None
        self.spool_end = 0

    def _consumed(self, part: _Range, count: int) -> None:
        part.at += count
        self.ranged -= count
        if part.at >= part.end:
            self.parts.remove(part)
            if part.owned:
                os.close(part.fd)

    def _read_block(self, part: _Range) -> None:
        """The next block of the range at the head, into memory before it (TLS, or a
        handler's blocking socket)."""
        data = os.pread(part.fd, min(BLOCK, part.end - part.at), part.at)
        if not data:
            raise ConnectionResetError(errno.ECONNRESET, "a file body ended early")
        self._consumed(part, len(data))
        self.parts.appendleft(memoryview(data))
        self.memory += len(data)

    def _sendfile(self, sock: socket.socket, part: _Range) -> bool:
        try:
            sent = os.sendfile(sock.fileno(), part.fd, part.at,
                               min(SENDFILE_BLOCK, part.end - part.at))
        except (BlockingIOError, InterruptedError):
            return False
        if not sent:  # the file is shorter than said: the response cannot be finished
            raise ConnectionResetError(errno.ECONNRESET, "a file body ended early")
        self._consumed(part, sent)
        return True


def send_some(sock: Any, data: memoryview, tls: bool) -> int:
    """Send part of ``data`` without waiting: the bytes sent, 0 if the socket takes none."""
    try:
        if tls:
            timeout = sock.gettimeout()
            if timeout != 0.0:
                sock.settimeout(0.0)
            try:
                return int(sock.send(data))
            finally:
                if timeout != 0.0:
                    sock.settimeout(timeout)
        timeout = sock.gettimeout()
        if timeout is None:
            return int(sock.send(data, DONTWAIT))
        if timeout == 0.0:
            return int(sock.send(data, NOSIGNAL))
        sock.settimeout(0.0)  # with a timeout set, Python would poll before the send
        try:
            return int(sock.send(data, NOSIGNAL))
        finally:
            sock.settimeout(timeout)
    except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
        return 0


# socket -> its outbox, while bytes may be queued in it (written by handler threads, taken by
# the multiplexer's; dict operations are atomic).
PENDING: dict[Any, Outbox] = {}


class _Closing:
    """The holder of a connection whose handler is done with it while its response is still
    being sent: once it is, the connection closes (``resume`` is never called)."""

    def resume(self) -> bool:
        return False

    def buffered(self) -> bytes:
        return b""

    def close(self) -> None:
        pass


CLOSING = _Closing()


def pending(sock: Any) -> bool:
    """Whether ``sock`` has bytes queued for the multiplexer to send.  (Any request a server
    gets is asked: a job, a datagram's tuple; only a stream socket can have an outbox.)"""
    if not PENDING:
        return False
    try:
        outbox = PENDING.get(sock)
    except TypeError:  # unhashable: not a socket
        return False
    return outbox is not None and outbox.size > 0


def take(sock: Any) -> Outbox | None:
    """The outbox of ``sock`` if it has bytes to send (for the multiplexer), else None."""
    outbox = PENDING.pop(sock, None)
    return outbox if outbox is not None and outbox.size else None


def discard(sock: Any) -> None:
    """``sock`` closes: what it had queued is dropped."""
    if not PENDING:
        return
    try:
        outbox = PENDING.pop(sock, None)
    except TypeError:  # unhashable: not a socket
        return
    if outbox is not None:
        outbox.close()


class OutboxWriter(io.BufferedIOBase):
    """A handler's ``wfile`` whose writes never wait for the client (see the module
    docstring); ``flush`` sends nothing more: the multiplexer does."""

    def __init__(self, sock: Any, timeout: float | None = None) -> None:
        super().__init__()
        self.sock = sock
        # The wait for a client that reads too slowly (the socket may be blocking meanwhile).
        self.timeout = timeout if timeout is not None else sock.gettimeout()
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.outbox = Outbox()
        self.shut = False  # closed (a plain attribute: IOBase.closed is a lookup by name)

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.shut:
            raise ValueError("write to a closed file")
        outbox, sock = self.outbox, self.sock
        try:
            if (not (outbox.memory or outbox.ranged) and type(data) is bytes and not self.tls
                    and sock.gettimeout() is None):
                # The common case, a blocking plain socket (as the multiplexer leaves it) and
                # nothing queued: one send, no view.
                try:
                    sent = sock.send(data, DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                if sent == len(data):
                    return len(data)
                view = memoryview(data)[sent:]
            else:
                view = memoryview(data).cast("B")
        except (BrokenPipeError, ConnectionError):
            discard(sock)
            raise
        size = len(data) if type(data) is bytes else view.nbytes
        try:
            if outbox.size and not outbox.send(self.sock):
                outbox.append(view)
            else:
                while view:  # nothing queued: straight to the socket
                    sent = send_some(self.sock, view[:TLS_PIECE] if self.tls else view,
                                     self.tls)
                    if not sent:
                        outbox.append(view)
                        break
                    view = view[sent:]
            if outbox.size:
                PENDING[self.sock] = outbox
                if outbox.size > SPOOL_LIMIT:
                    outbox.wait(self.sock, SPOOL_LIMIT // 2, self.timeout)
        except (BrokenPipeError, ConnectionError):
            discard(self.sock)
            raise
        return size

    def send_file(self, fd: int, offset: int, count: int) -> None:
        """``count`` bytes of the file ``fd`` from ``offset``, after what was written: sent
        with ``sendfile`` as the client reads (the file itself is not read into memory)."""
        if self.closed:
            raise ValueError("write to a closed file")
        self.outbox.append_file(fd, offset, count)
        PENDING[self.sock] = self.outbox
        if not self.tls and self.sock.gettimeout() is None:  # non-blocking: sendfile
            self.sock.settimeout(self.timeout if self.timeout else 0.0)
        try:
            self.outbox.send(self.sock)
        except (BrokenPipeError, ConnectionError):
            discard(self.sock)
            raise

    def close(self) -> None:
        """The handler's finish(): what is queued stays queued for the multiplexer."""
        self.shut = True
        super().close()
