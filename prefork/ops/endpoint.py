"""Small request/reply services the master answers from its own select loop.

The control socket and the metrics endpoint live in the master, whose loop also reaps and
replaces workers.  Serving one client synchronously there -- even for a bounded second -- lets
a handful of idle clients hold up supervision for many seconds.  So an :class:`Endpoint` never
waits on a client:

* **Everything is non-blocking and driven by the owner's selector.**  :meth:`Endpoint.register`
  puts the listening socket, and later every connection, into the owner's ``selectors``
  selector with ``data`` set to a callable taking the event mask; the loop calls
  ``key.data(mask)``.  The loop also waits no longer than :meth:`Endpoint.deadline` and calls
  :meth:`Endpoint.expire` each turn.
* **A connection is a small state machine** (:class:`Phase`): READING buffers bytes until the
  request is complete (:meth:`Endpoint.request_complete`) or too large
  (:attr:`Endpoint.max_request`); the reply is then computed at once, in memory, and WRITING
  sends it as the socket accepts it; then the connection is closed.  A reply that is known
  only later (a reload's outcome) is a :class:`~prefork.ops.buffered.Deferred`: the
  connection WAITs for it, unregistered, until the owner resolves it or its own timeout
  passes.
* **One deadline per connection, set at accept** (:attr:`Endpoint.timeout`), covers reading and
  writing together: a client that trickles a byte at a time does not buy a fresh second per
  ``recv``.  A client still talking at its deadline gets :meth:`Endpoint.timeout_reply` if the
  socket takes it without waiting, then the connection is closed.
* **Bounded.**  At most :attr:`Endpoint.max_connections` connections are open; a client beyond
  that is accepted and closed at once, so a flood costs a few syscalls, not memory, and the
  backlog never keeps the listening socket readable forever.
* **The answer comes from an ordinary socketserver handler class** (:attr:`handler_class`), the
  project's foundation: a ``StreamRequestHandler`` or ``BaseHTTPRequestHandler`` subclass that
  would also work on a real socket.  Here it runs over a :class:`BufferedRequest`, a stand-in
  for the connected socket whose ``makefile('rb')`` reads the buffered request and whose writes
  are collected in memory.  Handlers run in the master's loop, so they must be fast: they only
  compute from the master's state, they never do I/O of their own.  Their ``server`` is the
  endpoint.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import os
import selectors
import socket
import socketserver
import time
from typing import Any, ClassVar, TypeVar, cast

from prefork.ops.buffered import BufferedRequest, Deferred

log = logging.getLogger("prefork.master")

# Seconds a client connection may stay open, reading and writing included.  Waiting clients
# cost the loop nothing (at most MAX_CONNECTIONS of them), so this only has to outlast a slow
# operator's client on a loaded host.
SERVE_TIMEOUT = 3.0
MAX_CONNECTIONS = 64  # open connections per endpoint; more are accepted and closed at once
RECV_SIZE = 64 * 1024
ACCEPT_BATCH = 64  # connections accepted per readable event, so one flood cannot starve the loop
ACCEPT_PAUSE = 0.1  # seconds without accepting after accept() failed (EMFILE): no busy loop
DRAIN_LIMIT = 256 * 1024  # bytes read and discarded before closing (see Connection.finish)

E = TypeVar("E", bound="Endpoint")


class Phase(enum.Enum):
    READING = "reading"
    WAITING = "waiting"  # for a deferred reply (prefork.ops.buffered.Deferred); not registered
    WRITING = "writing"
    CLOSED = "closed"


class Connection:
    """One accepted client.  Invariant: registered in the endpoint's selector for reading while
    READING, for writing while WRITING, not at all while WAITING (nothing to read or write);
    in ``endpoint.connections`` exactly while its phase is not CLOSED."""

    def __init__(self, endpoint: Endpoint, sock: socket.socket, address: Any, deadline: float):
        self.endpoint = endpoint
        self.sock = sock
        self.address = address
        self.deadline = deadline  # time.monotonic(); fixed at accept, or by a Deferred
        self.deferred: Deferred | None = None
        self.phase = Phase.READING
        self.inbuf = bytearray()
        self.outbuf = memoryview(b"")
        self.eof = False

    def on_event(self, mask: int) -> None:
        """The selector's callback; never raises (a bug here must not stop the master)."""
        try:
            if self.phase is Phase.READING and mask & selectors.EVENT_READ:
                self._read()
            elif self.phase is Phase.WRITING and mask & selectors.EVENT_WRITE:
                self._write()
        except Exception:
            log.exception("master (pid %d) %s: connection failed", os.getpid(),
                          self.endpoint.name)
            self.close()

    def _read(self) -> None:
        try:
            chunk = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset by the peer: nobody left to answer
            self.close()
            return
        self.eof = not chunk
        self.inbuf += chunk
        endpoint = self.endpoint
        if len(self.inbuf) > endpoint.max_request:
            self.reply(endpoint.too_large_reply())
        elif self.eof or endpoint.request_complete(self.inbuf):
            answer = endpoint.answer(bytes(self.inbuf), self)
            if isinstance(answer, Deferred):
                self.wait(answer)
            else:
                self.reply(answer)

    def wait(self, deferred: Deferred) -> None:
        """Wait for ``deferred`` (at most its timeout, from now), unregistered."""
        self.phase = Phase.WAITING
        self.deferred = deferred
        self.deadline = time.monotonic() + deferred.timeout
        self.endpoint.unwatch(self)
        deferred.bind(self)

    def send_late(self, data: bytes) -> None:
        """The deferred reply is here (see :class:`Deferred`)."""
        if self.phase is Phase.WAITING:
            self.reply(data)

    def reply(self, data: bytes) -> None:
        """Switch to WRITING with ``data`` (nothing to send: close)."""
        waiting = self.phase is Phase.WAITING
        self.phase = Phase.WRITING
        self.outbuf = memoryview(data)
        self._write()
        if self.phase is Phase.WRITING:
            self.endpoint.watch(self, selectors.EVENT_WRITE, registered=not waiting)

    def _write(self) -> None:
        while self.outbuf:
            try:
                sent = self.sock.send(self.outbuf, socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the client went away or stopped reading: its loss
                self.close()
                return
            self.outbuf = self.outbuf[sent:]
        self.finish()

    def finish(self) -> None:
        """Close after a complete reply.  Bytes the client sent that we did not read would make
        the kernel answer the close with a TCP reset, which can destroy the reply before the
        client reads it: discard what is already there first (non-blocking, bounded)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
            drained = 0
            while not self.eof and drained < DRAIN_LIMIT:
                chunk = self.sock.recv(RECV_SIZE)
                self.eof = not chunk
                drained += len(chunk)
        self.close()

    def expire(self) -> None:
        """The deadline passed: a reader gets the timeout reply, a waiter the deferred's late
        reply, if it fits without waiting."""
        late = b""
        if self.phase is Phase.READING:
            late = self.endpoint.timeout_reply()
        elif self.phase is Phase.WAITING and self.deferred is not None:
            late = self.deferred.give_up()
        if late:
            with contextlib.suppress(OSError):
                self.sock.send(late, socket.MSG_NOSIGNAL)
        self.close()

    def close(self) -> None:
        if self.phase is Phase.CLOSED:
            return
        self.phase = Phase.CLOSED
        self.endpoint.forget(self)
        self.sock.close()


class Endpoint:
    """A listening socket and its connections, served from the owner's select loop.

    Methods for the owner: :meth:`register` (once, with the loop's selector), :meth:`deadline`
    (wait no longer than this), :meth:`expire` (each turn), :meth:`close`.  The loop calls
    ``key.data(mask)`` for every key whose data is callable.

    Subclasses set :attr:`handler_class` and :attr:`name`, and may override
    :meth:`request_complete`, :meth:`admit`, :meth:`timeout_reply`, :meth:`too_large_reply`
    and :meth:`failure_reply`.  Tunables (class attributes): ``timeout``, ``max_request``,
    ``max_connections``, ``backlog`` (for the subclass's ``listen()``).
    """

    handler_class: ClassVar[type[socketserver.BaseRequestHandler]]
    name = "endpoint"
    timeout = SERVE_TIMEOUT
    max_request = 64 * 1024
    max_connections = MAX_CONNECTIONS
    backlog = MAX_CONNECTIONS  # for subclasses' listen(): a burst of clients is not dropped

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)  # a spurious wake-up must not block in accept()
        self.sock = sock
        self.selector: selectors.BaseSelector | None = None
        self.connections: dict[int, Connection] = {}  # fd -> connection, while open
        self.accept_paused_until: float | None = None
        self.closed = False

    # -- the owner's interface ----------------------------------------------------------------

    def register(self, selector: selectors.BaseSelector) -> None:
        """Serve from ``selector``: the listening socket now, each connection once accepted."""
        if self.selector is not None:
            raise RuntimeError(f"{self.name} is already registered")
        self.selector = selector
        if not self.closed:
            selector.register(self.sock, selectors.EVENT_READ, self.on_accept)

    def fileno(self) -> int:
        return self.sock.fileno()

    def deadline(self) -> float | None:
        """The earliest moment :meth:`expire` has something to do (``time.monotonic()``)."""
        times = [c.deadline for c in self.connections.values()]
        if self.accept_paused_until is not None:
            times.append(self.accept_paused_until)
        return min(times, default=None)

    def expire(self, now: float) -> None:
        """Close the connections past their deadline; resume accepting after a pause."""
        for conn in [c for c in self.connections.values() if c.deadline <= now]:
            conn.expire()
        if self.accept_paused_until is not None and self.accept_paused_until <= now:
            self.accept_paused_until = None
            if self.selector is not None and not self.closed:
                self.selector.register(self.sock, selectors.EVENT_READ, self.on_accept)

    def close(self) -> None:
        """Unregister and close the connections and the listening socket.  Idempotent."""
        if self.closed:
            return
        self.closed = True
        for conn in list(self.connections.values()):
            conn.close()
        if self.selector is not None and self.accept_paused_until is None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(self.sock)
        self.sock.close()

    def __enter__(self: E) -> E:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- hooks for subclasses -----------------------------------------------------------------

    def request_complete(self, data: bytearray) -> bool:
        """Whether ``data`` holds a whole request (end of input always completes one)."""
        return b"\n" in data

    def admit(self, sock: socket.socket) -> bytes | None:
        """None to serve a new connection, or a reply to send it before closing, unread."""
        return None

    def timeout_reply(self) -> bytes:
        return b""

    def too_large_reply(self) -> bytes:
        return b""

    def failure_reply(self, exc: Exception) -> bytes:
        return b""

    # -- serving ------------------------------------------------------------------------------

    def answer(self, data: bytes, conn: Connection) -> bytes | Deferred:
        """Run the handler class over the buffered request and return what it wrote, or the
        :class:`Deferred` it answers through later."""
        request = BufferedRequest(data, conn.sock)
        try:
            # socketserver's convention: what a handler needs from its owner hangs off
            # `server`.  The endpoint is not a BaseServer; the handler classes do not need one.
            self.handler_class(
                cast(socket.socket, request), conn.address, cast(socketserver.BaseServer, self)
            )
        except Exception as exc:
            log.exception("master (pid %d) %s: handler failed", os.getpid(), self.name)
            return self.failure_reply(exc)
        if request.deferred is not None:
            return request.deferred
        return bytes(request.reply)

    def on_accept(self, mask: int) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.ECONNABORTED:
                    continue
                # Out of fds, say: the backlog keeps the socket readable, so stop looking
                # at it for a moment instead of spinning.
                log.warning("master (pid %d) %s: accept failed: %s", os.getpid(), self.name, exc)
                self._pause_accepting()
                return
            if len(self.connections) >= self.max_connections:
                sock.close()
                continue
            self._start(sock, address)

    def _pause_accepting(self) -> None:
        self.accept_paused_until = time.monotonic() + ACCEPT_PAUSE
        if self.selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(self.sock)

    def _start(self, sock: socket.socket, address: Any) -> None:
        sock.setblocking(False)
        conn = Connection(self, sock, address, time.monotonic() + self.timeout)
        self.connections[sock.fileno()] = conn
        assert self.selector is not None  # accepting means registered
        self.selector.register(sock, selectors.EVENT_READ, conn.on_event)
        try:
            refusal = self.admit(sock)
        except OSError as exc:
            log.debug("master (pid %d) %s: peer gone: %s", os.getpid(), self.name, exc)
            conn.close()
            return
        except Exception:  # a bug in admit(): refuse this client, keep the master's loop
            log.exception("master (pid %d) %s: admit failed", os.getpid(), self.name)
            conn.close()
            return
        if refusal is not None:
            conn.reply(refusal)

    def watch(self, conn: Connection, events: int, registered: bool = True) -> None:
        """Wait for ``events`` on ``conn`` (``registered``: it is in the selector already)."""
        assert self.selector is not None
        if registered:
            self.selector.modify(conn.sock, events, conn.on_event)
        else:
            self.selector.register(conn.sock, events, conn.on_event)

    def unwatch(self, conn: Connection) -> None:
        assert self.selector is not None
        self.selector.unregister(conn.sock)

    def forget(self, conn: Connection) -> None:
        """Called by a connection as it closes."""
        self.connections.pop(conn.sock.fileno(), None)
        if self.selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(conn.sock)
