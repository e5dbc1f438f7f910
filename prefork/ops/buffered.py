"""What a handler class of an :class:`~prefork.ops.endpoint.Endpoint` sees as its socket, and
how it answers later.

:class:`BufferedRequest` stands in for the connected socket: the request was read in full by
the endpoint before the handler runs, and what the handler writes is collected in memory and
sent by the endpoint, so the handler never waits on a client.

:class:`Deferred` is a reply that cannot be computed at once -- the outcome of a reload, say,
known only turns of the master's loop later.  The handler passes one to
:meth:`BufferedRequest.defer` and writes nothing; the connection then waits, costing no
selector registration, until the owner calls :meth:`Deferred.resolve` with the reply, or the
deferred's own timeout passes and the client gets :attr:`Deferred.late_reply`.  Either way the
loop never blocks, and a client that hung up meanwhile is simply not answered.
"""

from __future__ import annotations

import io
import socket
from typing import Any, Protocol


class Waiting(Protocol):
    """The side of a connection a :class:`Deferred` answers through."""

    def send_late(self, data: bytes) -> None: ...


class Deferred:
    """A reply that comes later.  ``timeout``: seconds the client is kept waiting at most, then
    it gets ``late_reply``.  Methods for the owner: :meth:`resolve` (once; later calls, and
    calls after the timeout, do nothing).  ``done`` tells whether it was answered or gave up."""

    def __init__(self, timeout: float, late_reply: bytes = b"") -> None:
        self.timeout = timeout
        self.late_reply = late_reply
        self.done = False
        self._data: bytes | None = None  # resolved before a connection waited on it
        self._conn: Waiting | None = None

    def bind(self, conn: Waiting) -> None:
        """Called by the endpoint: ``conn`` waits for this reply."""
        self._conn = conn
        if self._data is not None:
            conn.send_late(self._data)

    def resolve(self, data: bytes) -> None:
        if self.done:
            return
        self.done = True
        if self._conn is None:
            self._data = data
        else:
            self._conn.send_late(data)

    def give_up(self) -> bytes:
        """The timeout passed (called by the endpoint): the reply the client gets instead."""
        self.done = True
        return self.late_reply


class _Sink(io.RawIOBase):
    """A writable raw file appending to a bytearray (what ``makefile('wb')`` returns)."""

    def __init__(self, out: bytearray) -> None:
        self.out = out

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        with memoryview(data) as view:
            self.out += view
            return view.nbytes


class BufferedRequest:
    """Stands in for a connected socket in front of a handler class.

    ``makefile('rb')`` reads the buffered request, ``makefile('wb')``, ``sendall()`` and
    ``send()`` append to :attr:`reply`; :meth:`defer` answers later instead.  Options and
    timeouts are accepted and ignored (nothing here can block); ``getsockopt``,
    ``getpeername`` and ``getsockname`` answer for the real connection, so a handler can still
    ask who its peer is.
    """

    def __init__(self, data: bytes, sock: socket.socket) -> None:
        self.data = data
        self.reply = bytearray()
        self.deferred: Deferred | None = None
        self._sock = sock

    def defer(self, deferred: Deferred) -> None:
        """Answer later, through ``deferred``: what was written so far is dropped."""
        self.deferred = deferred

    def makefile(self, mode: str = "r", buffering: int | None = None, **_: object) -> Any:
        if "w" in mode:
            sink = _Sink(self.reply)
            return sink if buffering == 0 else io.BufferedWriter(sink)
        return io.BytesIO(self.data)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self.reply += data

    def send(self, data: Any, flags: int = 0) -> int:
        with memoryview(data) as view:
            self.reply += view
            return view.nbytes

    def getsockopt(self, *args: Any) -> Any:
        return self._sock.getsockopt(*args)

    def getpeername(self) -> Any:
        return self._sock.getpeername()

    def getsockname(self) -> Any:
        return self._sock.getsockname()

    def settimeout(self, timeout: float | None) -> None:
        pass

    def gettimeout(self) -> float | None:
        return None

    def setsockopt(self, *args: Any) -> None:
        pass

    def shutdown(self, how: int) -> None:
        pass

    def close(self) -> None:
        pass
