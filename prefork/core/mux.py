"""The worker's multiplexer: where connections wait until they have work for a handler.

Why.  A socketserver handler owns its connection until it returns, and it reads with blocking
calls.  A worker that hands a connection to its handler at accept therefore belongs to that
client until the client speaks: two idle connections stop a two-worker pool, and sixteen clients
dripping a request head one byte at a time stop it for as long as they like.  So a connection
goes to the handler only once it has work -- the first bytes arrived (a plain stream handler),
a complete HTTP request head arrived (an ``http.server`` handler; with a body of up to
``BODY_WAIT`` bytes, that too: ``httppeek.py``), the TLS handshake is done --
and until then it waits here, registered in the worker's epoll, costing a registration and not
a worker.  Between keep-alive requests it comes back here too (see ``keepalive.py``).

How.  The same epoll set holds the listening sockets (``EPOLLEXCLUSIVE``, registered by the
worker), the worker's own fds, and every waiting connection, edge-triggered: readiness is
checked by *peeking* (``MSG_PEEK``) so that the handler still reads the whole request from the
socket itself and the socketserver contract is unchanged; with level-triggering, a partial head
left in the socket would wake the loop again at once, forever.  TLS bytes are encrypted and
cannot be peeked at: for an HTTP handler the head is read, decrypted and without blocking, into
the socket's read-ahead, which its reads serve first (``accepting.read_head``, ``tls.py``).

* **One deadline per wait, fixed when the wait begins** (``client_timeout`` from accept for the
  PROXY protocol header (``proxyproto.py``), the handshake and the head together;
  ``keep_alive`` for an idle keep-alive connection, then ``client_timeout`` from its first
  byte): a client that trickles bytes never buys more time.
  A connection past its deadline is closed (an HTTP one that sent part of a head gets a 408).
* **Bounded, and no slower to refuse than the parser.**  A head over ``MAX_HEAD`` bytes gets
  a 431; a head that has not ended is judged by the handler's own rules as its bytes arrive
  (``accepting.judge``: the WSGI handler's parser itself, or the limits an http.server
  handler applies), and one already refused gets that status at once, not a 408 later.  At
  most ``worker_connections`` connections wait per worker; at that bound the worker stops
  accepting, so the kernel's queue and the other workers take the new ones.
* **The common path pays little** (measured: ``docs/benchmarks.md``, "The raw path").  Right
  after accept the connection is checked once, without waiting: a client that sent its request
  with the connect (and ``TCP_DEFER_ACCEPT`` makes that the rule) goes straight to the handler,
  with one ``recv(MSG_PEEK)`` more than a bare accept loop, no epoll call and no :class:`Conn`
  (one is made only for a connection that must wait, or that a handler holds), in one call
  to the function ``serve_new`` made for its listener (``core/dispatch.py``).  A stream
  listener's event accepts *one* connection: the listener is level-triggered, so a second one
  waiting wakes the loop again at once, whereas a second ``accept`` finding nothing (the usual
  case) costs a system call and an exception.  Datagram listeners take a burst.  A listener
  whose server keeps socketserver's own ``get_request`` is accepted from without the Python
  layers of ``socket.accept`` (same socket, same timeout rule).  ``TCP_NODELAY`` is set on the
  listening socket, which accepted sockets inherit, instead of once per connection.  The
  accepting side (the listeners, pausing and resuming them) is ``listeners.py``.  A kept-alive
  connection back from its handler with nothing pipelined waits without a peek (its next
  request's edge is still to come, or already queued), and keeps the blocking mode it had (a
  WSGI handler's reads wait only when they must: ``connio.py``); where its handler reads the
  next head itself (the WSGI handler: ``keepalive.TakesHeads``), the event is answered with
  that one read, and a whole head of the common shape is served at once (``on_event``).

Invariants: a connection is in :attr:`Multiplexer.conns` exactly while its phase is a waiting
one (:data:`WAITING`); a connection in the handler (BUSY) belongs to the worker's dispatch and
nothing here touches it.
"""

from __future__ import annotations

import logging
import select
import socketserver
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prefork.core.accepting import REFUSAL_REPLIES, TIMEOUT_REPLY, Check, look, requests_here
from prefork.core.conn import Conn, Deadlines, Phase, reply_before_close
from prefork.core.handover import take_backlog
from prefork.core.keepalive import GONE, OTHER, Ready, Resumable, idle_for, retire
from prefork.core.listeners import Limits, Listening
from prefork.core.opening import Opening
from prefork.core.outbox import CLOSING, PENDING, take
from prefork.core.proxyproto import refused
from prefork.core.sending import PLAIN_EVENTS, TLS_EVENTS, Sending
from prefork.core.urgenthook import wants_urgent

if TYPE_CHECKING:
    from prefork.ops.accesslog import AccessLog as Batch

log = logging.getLogger("prefork.worker")

HUP_EVENTS = select.EPOLLRDHUP | select.EPOLLHUP
# On every kept-alive request's path: an enum member read from the class costs its
# metaclass's __getattr__ hook in 3.11.
_IDLE, _BUSY = Phase.IDLE, Phase.BUSY
_monotonic = time.monotonic

class Multiplexer(Opening, Listening, Sending):
    """The waiting connections of one worker.  Methods for the worker's loop: on_event(fd,
    events) for every fd it does not own, run_ready() when :attr:`ready` is not empty,
    expire(now) when :attr:`deadlines` is not empty or not :attr:`accepting`, timeout(default)
    (just ``default`` when neither is pending), drain() on a graceful stop, close() at the end.
    ``serve(conn)`` runs the handler for one request and returns True if the handler held the
    connection (keep-alive); ``serve_new(server)`` gives the function that does the same for a
    new connection on ``server`` that has no Conn yet (``(request, address)`` -> the handler
    holding it, or None); ``interrupted()`` says a quick stop is pending; ``empty_accept()``
    counts a wake-up for nothing."""

    # Whether handlers run outside this loop (threads): an event for a connection in its
    # handler is then taken, and dropped, by the loop (see _held).
    busy_elsewhere = False
    # serve_head(conn, head): the request whose head a held connection's handler read itself
    # (on_event), served, counted; True if the handler holds the connection again.  None: every
    # held connection is peeked at here.
    serve_head: Callable[[Conn, Any], bool] | None = None

    def __init__(
        self, ep: select.epoll, servers: dict[int, socketserver.BaseServer],
        serve: Callable[[Conn], bool],
        serve_new: Callable[[socketserver.BaseServer], Callable[[Any, Any], Resumable | None]],
        interrupted: Callable[[], bool], empty_accept: Callable[[], None], limits: Limits,
    ) -> None:
        super().__init__(ep, servers, serve_new, empty_accept, limits)
        self.serve = serve
        self.interrupted = interrupted
        self.conns: dict[int, Conn] = {}  # fd -> waiting connection
        self.ready: deque[Conn] = deque()  # held connections with a request already buffered
        self.deadlines = Deadlines()
        self.draining = False

    # -- the loop's interface ------------------------------------------------------------------

    def timeout(self, default: float, now: float, batch: Batch | None = None) -> float:
        """The loop's wait: ``default`` (-1: none), bounded by the deadlines, a pause, and the
        access log's batch (its lines written once they waited their delay: ops/accesslog.py)."""
        if batch is not None and batch.pending:
            written = batch.first + batch.delay
            if now >= written:
                batch.flush()
            elif default < 0 or now + default > written:
                default = written - now
        if self.ready:
            return 0.0
        heap, until = self.deadlines.heap, self.failures.until  # (a pause: resource pressure)
        due = heap[0][0] if heap else None  # (on every wait of the loop: no calls)
        if until and (due is None or until < due):
            due = until
        if due is None:
            return default
        wait = due - now if due > now else 0.0
        return wait if default < 0 or wait < default else default

    def on_event(self, fd: int, events: int) -> None:
        if fd in self.listeners:
            self.accept(fd)
            return
        conn = self.conns.get(fd)
        if conn is None:
            return  # a connection in the handler, or one closed since
        hup = conn.hup
        if events & HUP_EVENTS:
            conn.hup = hup = True  # (its EOF is already there for the peek after the request)
        if not conn.direct or conn.phase is not _IDLE:
            self._other_event(conn, events)
            return
        # The common event, a kept-alive request, answered here (one frame fewer): a held
        # connection whose handler reads its next head itself (keepalive.TakesHeads), one read
        # instead of a peek here and a read there; a request the handler took is served at
        # once, anything else is looked at as a peek would have (what was read is in the
        # handler's buffer, which the look includes).
        head = conn.resumable.take_head()  # type: ignore[union-attr]  # (TakesHeads)
        if type(head) is int:
            if head == GONE:
                self._close(conn)
            elif head == OTHER or hup:
                self._check(conn, defer=False, hup=hup)
            return  # (NOTHING: woken for nothing; it waits on)
        # Served from this event, in this thread: the connection keeps its place here (and
        # its deadline's entry) unless it must go another way after the request.
        conn.phase = _BUSY
        serve_head = self.serve_head  # (an attribute, not a method: read as one, then called)
        if not serve_head(conn, head):  # type: ignore[misc]  # (set where conn.direct)
            self.conns.pop(conn.fd, None)
            conn.phase = Phase.CLOSED
            return
        resumable = conn.resumable
        if (hup or self.draining or resumable is CLOSING or resumable is None
                or (PENDING and conn.sock in PENDING)
                or (not resumable._clean and resumable.buffered())  # type: ignore[attr-defined]
                or conn.sock.gettimeout() is not None):
            self.conns.pop(conn.fd, None)
            self._held(conn)  # (what is left to send, a pipelined request, a drain...)
            return
        conn.phase = _IDLE  # the next request's edge is still to come (see _held)
        conn.deadline = _monotonic() + conn.idle

    def _other_event(self, conn: Conn, events: int) -> None:
        """An event for a waiting connection other than a kept-alive one's next request."""
        if conn.phase is Phase.SENDING:
            self._send_more(conn)
        elif conn.phase is Phase.HANDSHAKE:
            self._handshake(conn)
        elif conn.phase is Phase.PROXY:
            self._proxy(conn)
        elif events & select.EPOLLPRI and conn.phase is Phase.WAITING:
            self._dispatch(conn)  # urgent data for a handler with handle_urgent() (urgenthook)
        else:
            self._check(conn, defer=False, hup=conn.hup)

    def run_ready(self) -> None:
        for _ in range(len(self.ready)):
            if self.interrupted():
                return
            conn = self.ready.popleft()
            # Checked again: an epoll event may have served that request meanwhile.
            if conn.phase is Phase.IDLE:
                self._check(conn, defer=False)

    def expire(self, now: float) -> None:
        for conn in self.deadlines.due(now):
            if conn.phase is Phase.PARTIAL:
                self._reply_close(conn, TIMEOUT_REPLY)
            elif conn.phase is Phase.PROXY:
                refused(conn.address, "no whole PROXY header within client_timeout")
                self._close(conn)
            else:
                self._close(conn)
        if not self.accepting and not self.draining:
            self._resume_accepting()

    def drain(self) -> None:
        """Graceful stop (a retiring worker): accept no more, and answer every response with
        ``Connection: close`` (:func:`keepalive.retire`).  A connection waiting here is not
        closed at once: its client may have sent its next request already, and a close would
        lose it.  Each keeps its place for ``drain_grace`` more (never longer than it had):
        the request that arrives meanwhile is served (its response says close), and at the
        grace's end an idle one is closed.  A request received in full (pipelined behind one
        served) is answered too."""
        if self.draining:
            return
        take_backlog(self.ep, self.listeners, self.take, self.admit, self.conns,
                     self.limits)  # handover.py
        self.draining = True
        retire()
        self._pause_accepting()
        until = time.monotonic() + self.limits.drain_grace
        for conn in list(self.conns.values()):
            if conn.phase in (Phase.IDLE, Phase.WAITING) and conn.deadline > until:
                self.deadlines.arm(conn, until)
            if conn.phase is Phase.IDLE:
                conn.budget = 0  # one request more at most (see _held)

    def idle(self) -> bool:
        """Nothing waits here and nothing is in a handler (a graceful stop may end)."""
        return not self.conns

    def close(self) -> None:
        self.ready.clear()
        for conn in list(self.conns.values()):
            self._close(conn)

    # -- waiting -------------------------------------------------------------------------------

    def _check(self, conn: Conn, defer: bool, hup: bool = False) -> None:
        """Hand ``conn`` to its handler if it has work, else let it wait (its deadline is set).
        ``defer``: queue a ready one in :attr:`ready` instead (no recursion into the handler
        from the handler's own return).  ``hup``: the client half-closed (EPOLLRDHUP), so a
        request still incomplete never will be: closed at once."""
        check = self._peek(conn)
        if hup and check is Check.MORE and not conn.tls:
            check = Check.EOF
        if check is Check.READY:
            if defer:
                self.ready.append(conn)
            else:
                self._dispatch(conn)
        elif check is Check.MORE:
            self._wait(conn)
        elif check in REFUSAL_REPLIES:
            self._reply_close(conn, REFUSAL_REPLIES[check])
        elif conn.ready is Ready.DATA and conn.phase is Phase.WAITING and not conn.tls:
            self._dispatch(conn)  # EOF at once: the handler sees it, as with socketserver
        else:
            self._close(conn)

    def _peek(self, conn: Conn) -> Check:
        check, started = look(conn, self.buf)
        if started and conn.phase is not Phase.PARTIAL:
            if conn.phase is Phase.IDLE:  # a new request began: its head has client_timeout
                self.deadlines.arm(conn, time.monotonic() + self.limits.head_wait)
            conn.phase = Phase.PARTIAL
        return check

    def _wait(self, conn: Conn) -> None:
        if not conn.registered:
            events = TLS_EVENTS if conn.tls else PLAIN_EVENTS
            if wants_urgent(getattr(conn.server, "RequestHandlerClass", None)):
                events |= select.EPOLLPRI  # (only for a handler with handle_urgent())
            self.ep.register(conn.fd, events)
            conn.registered = True
        if conn.fd not in self.conns:
            self.conns[conn.fd] = conn
            self.deadlines.arm(conn, conn.deadline)

    # -- to the handler and back ---------------------------------------------------------------

    def _dispatch(self, conn: Conn) -> None:
        self.conns.pop(conn.fd, None)
        conn.phase = Phase.BUSY
        conn.judged = None  # (the next head is judged afresh: accepting.judge)
        if not self.serve(conn):
            conn.phase = Phase.CLOSED
            return
        self._held(conn)

    def _dispatch_new(self, fd: int, request: Any, address: Any) -> None:
        """A new connection on listener ``fd`` that has work, to its handler without a Conn."""
        resumable = self.serve_new[fd](request, address)
        if resumable is not None:
            self._held_new(fd, request, address, resumable)

    def _held_new(self, fd: int, request: Any, address: Any, resumable: Resumable) -> None:
        conn = Conn(request, address, self.listeners[fd], self.ready_modes[fd])
        conn.resumable = resumable
        self._held(conn)

    def _held(self, conn: Conn) -> None:
        """``conn``'s handler held it for keep-alive.  A pipelined request already buffered
        goes behind the others (self.ready), so one client cannot keep the worker to itself.
        The rest of a response the handler left unsent goes first (:meth:`_send_rest`)."""
        # Read directly only from the wait below (nothing buffered): a connection queued in
        # self.ready, or partly read, has bytes in its handler's buffer that come first.
        conn.direct = False
        if PENDING and (outbox := take(conn.sock)) is not None:
            self._send_rest(conn, outbox)
            return
        if conn.resumable is CLOSING:  # its handler is done with it, and all was sent
            self._close(conn)
            return
        conn.phase = Phase.IDLE
        # Blocking mode, whatever timeout the handler left: with a timeout set, Python polls
        # before every recv (MSG_DONTWAIT or not), and a peek would wait for the client.
        # (A handler whose reads never had to wait left it so: core/connio.py.)
        if conn.sock.gettimeout() is not None:
            conn.sock.settimeout(None)
        now = time.monotonic()
        if not conn.idle:  # (the handler holding it stays the same)
            conn.idle = idle_for(conn.resumable, self.limits.idle_wait)
        conn.deadline = now + conn.idle
        if self.draining:
            # Answer what was received; with nothing received, wait drain_grace for the next
            # request (the response before it may not have said close).  A handler that keeps
            # the connection despite retire() gets no more than that.
            if conn.budget is None:
                conn.budget = max(1, requests_here(conn, self.buf))
            if conn.budget <= 0:
                self._close(conn)
                return
            conn.budget -= 1
            conn.deadline = min(conn.deadline, now + self.limits.drain_grace)
        elif (not self.busy_elsewhere and not conn.tls and not conn.hup
              and conn.resumable is not None and not conn.resumable.buffered()):
            # Nothing pipelined: the connection waits for its next request without a peek.
            # Edge-triggered, an arrival since the handler's last read is still reported
            # (and registering a connection reports what it has already).  Not so where the
            # handler ran in another thread: this loop may have taken that event meanwhile.
            # A handler that reads its next head itself does so on that event (on_event).
            # (A client that half-closed makes no edge again: its EOF is peeked at, below.)
            conn.direct = self.serve_head is not None and hasattr(conn.resumable, "take_head")
            self._wait(conn)
            return
        self._check(conn, defer=True)
        if conn.phase is Phase.IDLE and conn.fd not in self.conns:
            self.conns[conn.fd] = conn  # queued in self.ready: waiting all the same
            self.deadlines.arm(conn, conn.deadline)

    # -- the way out ---------------------------------------------------------------------------

    def _reply_close(self, conn: Conn, reply: bytes) -> None:
        reply_before_close(conn.sock, reply)
        self._close(conn)

    def _close(self, conn: Conn) -> None:
        self.conns.pop(conn.fd, None)
        conn.phase = Phase.CLOSED
        conn.release()
