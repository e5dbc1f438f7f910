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
  unlinked temporary file, which a plain socket then sends with ``sendfile``.  Past
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


class Outbox:
    """The bytes of one connection written and not yet sent, in order.  Methods: append(data),
    send(sock) -> True once empty, wait(sock, down_to, timeout), close(); ``size`` bytes."""

    __slots__ = ("chunks", "file", "memory", "read_at", "write_at")

    def __init__(self) -> None:
        self.chunks: deque[memoryview] = deque()  # in memory, before what the file holds
        self.memory = 0
        self.file: IO[bytes] | None = None  # the spool: bytes read_at..write_at unsent
        self.read_at = self.write_at = 0

    @property
    def size(self) -> int:
        return self.memory + self.write_at - self.read_at

    def append(self, data: bytes | memoryview) -> None:
        if self.write_at == self.read_at and self.memory + len(data) <= MEMORY:
            self.chunks.append(memoryview(bytes(data)))
            self.memory += len(data)
            return
        if self.file is None:
            self.file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        view, fd = memoryview(data), self.file.fileno()
        while view:
            written = os.pwrite(fd, view, self.write_at)
            self.write_at += written
            view = view[written:]

    def send(self, sock: Any) -> bool:
        """Send what ``sock`` takes now, without waiting; True once nothing is left.  A
        blocking plain socket is sent to with MSG_DONTWAIT, any other must be non-blocking."""
        tls = isinstance(sock, ssl.SSLSocket)
        while True:
            if not self.chunks:
                if self.read_at == self.write_at:
                    self._rewind()
                    return True
                if not tls and sock.gettimeout() == 0.0:  # the multiplexer's: sendfile
                    if not self._sendfile(sock):
                        return False
                    continue
                self._read_block()
            head = self.chunks[0]
            piece = head[:TLS_PIECE] if tls else head
            sent = send_some(sock, piece, tls)
            if not sent:
                return False
            self.memory -= sent
            if sent == len(head):
                self.chunks.popleft()
            else:
                self.chunks[0] = head[sent:]

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
        self.chunks.clear()
        self.memory = 0
        if self.file is not None:
            self.file.close()
            self.file = None
        self.read_at = self.write_at = 0

    def _read_block(self) -> None:
        assert self.file is not None
        data = os.pread(self.file.fileno(), min(BLOCK, self.write_at - self.read_at),
                        self.read_at)
        self.read_at += len(data)
        self.chunks.append(memoryview(data))
        self.memory += len(data)

    def _sendfile(self, sock: socket.socket) -> bool:
        assert self.file is not None
        try:
            sent = os.sendfile(sock.fileno(), self.file.fileno(), self.read_at,
                               min(SENDFILE_BLOCK, self.write_at - self.read_at))
        except (BlockingIOError, InterruptedError):
            return False
        if not sent:
            raise ConnectionResetError(errno.ECONNRESET, "sendfile sent nothing")
        self.read_at += sent
        return True

    def _rewind(self) -> None:
        """Everything was sent: the spool file (if any) starts again from its beginning."""
        if self.file is not None and self.write_at:
            os.ftruncate(self.file.fileno(), 0)
        self.read_at = self.write_at = 0


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

    def __init__(self, sock: Any) -> None:
        super().__init__()
        self.sock = sock
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.outbox = Outbox()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("write to a closed file")
        view = memoryview(data).cast("B")
        size = len(view)
        outbox = self.outbox
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
                    outbox.wait(self.sock, SPOOL_LIMIT // 2, self.sock.gettimeout())
        except (BrokenPipeError, ConnectionError):
            discard(self.sock)
            raise
        return size

    def close(self) -> None:
        """The handler's finish(): what is queued stays queued for the multiplexer."""
        super().close()
