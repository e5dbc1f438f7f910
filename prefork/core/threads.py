"""Handler threads in a worker (``threads`` > 1): a pool of processes x threads.

Why.  A worker serves one request at a time: a handler that waits (on a database, an upstream,
``time.sleep``) holds its whole process meanwhile.  With ``threads = N`` a worker hands ready
connections to N handler threads instead, with the stdlib's ``ThreadingMixIn`` semantics -- the
same handler classes, socketserver's own request path (``verify_request``,
``process_request``, ``handle_error``, ``shutdown_request``) run in the thread -- but bounded,
and without giving up what the multiplexer and the scoreboard promise.

How.

* **The main thread stays the multiplexer.**  It alone accepts, peeks, waits, times out and
  touches the epoll set, the waiting connections and their deadlines.  A connection with work
  goes on the job queue (a deque under a condition); a free thread takes it, runs the request
  and puts the connection on the ``done`` deque, then writes an eventfd that is in the
  multiplexer's epoll set.  The multiplexer takes it back in its own thread: a connection the
  handler held (keep-alive, :func:`prefork.core.keepalive.hold`, whose offer is a ContextVar and
  so per thread) waits for its next request in epoll again, exactly as without threads.
* **Bounded.**  At most N requests run at once.  Once the jobs handed out and not yet back reach
  N, the worker stops accepting (the listeners leave its epoll set, so the kernel's queue and
  the other workers take new clients) and resumes when a thread is free; connections already
  accepted that become ready meanwhile queue for a thread.
* **Exact.**  Each thread owns a scoreboard slot (see core/scoreboard.py): ``prefork status``
  shows each thread busy or idle with its request's age, and the master's ``request_timeout``
  sees the oldest request in flight of any thread, so one hung thread gets its worker killed
  while the others are idle.  The worker's title says how many threads are busy.
* **Stopping.**  Graceful: the worker's loop ends only when the multiplexer is :meth:`idle` --
  nothing waiting, queued or running -- so queued requests are served and running ones finish;
  the threads are then told to stop and joined.  Quick (and the master gone): the main thread
  leaves its loop at once and the process ends in ``os._exit``; the threads are daemons.
* **Fork safety.**  Threads are started by the worker's loop, after the worker is set up
  (``post_fork`` done): never in the master, nor in a ``preload`` template.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socketserver
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from prefork.core.conn import Conn, Phase
from prefork.core.contract import PoolServer
from prefork.core.keepalive import Resumable
from prefork.core.listeners import Limits
from prefork.core.mux import Multiplexer
from prefork.core.scoreboard import SlotWriter

log = logging.getLogger("prefork.worker")

# What a thread runs: socketserver's request path for a new connection (the resumable handler
# if it held it, else None), and the next request on a held one (False: it was closed, or is
# once its response is sent).
Process = Callable[[socketserver.BaseServer, Any, Any], "Resumable | None"]
Resume = Callable[[Conn], bool]


def handler_threads(server: PoolServer) -> int:
    """How many handler threads each worker of ``server`` runs (1: the worker's loop serves
    requests itself).  The one place that reads ``threads``: the pool sizes the scoreboard
    from it (a slot per thread; the worker learns the count from the board), and the WSGI
    handler asks it for ``wsgi.multithread``."""
    return server.threads


class HandlerThreads:
    """``len(slots)`` daemon threads, each writing its own scoreboard slot.

    For the multiplexer's thread only: submit(conn), completed() -> [(conn, held)], stop(join).
    Read by it: ``count``, ``pending`` (submitted, not yet back), ``busy`` (threads at work,
    as far as the main thread knows), ``served`` (requests done), ``wake_fd`` (readable when
    connections are back).
    """

    def __init__(self, slots: Sequence[SlotWriter], process: Process, resume: Resume) -> None:
        self.count = len(slots)
        self.pending = 0
        self.served = 0
        self._process, self._resume = process, resume
        self._jobs: deque[Conn] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._stopping = False
        # Appended by the threads, emptied by the main thread; deque appends and pops are
        # atomic.  Each append is followed by a write to wake_fd.
        self._done: deque[tuple[Conn, bool]] = deque()
        self.wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._threads = [
            threading.Thread(target=self._run, args=(slot,), daemon=True,
                             name=f"prefork-handler-{number}")
            for number, slot in enumerate(slots, 1)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def busy(self) -> int:
        return min(self.pending, self.count)

    def saturated(self) -> bool:
        return self.pending >= self.count

    def submit(self, conn: Conn) -> None:
        self.pending += 1
        with self._cond:
            self._jobs.append(conn)
            self._cond.notify()

    def completed(self) -> list[tuple[Conn, bool]]:
        """The connections back from the threads, with whether the handler held each."""
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.wake_fd)  # first: a later append writes it again
        done = self._done
        out = [done.popleft() for _ in range(len(done))]
        self.pending -= len(out)
        self.served += len(out)
        return out

    def stop(self, join: bool) -> None:
        """Let the threads end once the queue is empty; ``join``: wait for them (and close
        the eventfd, which a thread still running would write to: without ``join`` the
        process is about to end in ``os._exit``)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if join:
            for thread in self._threads:
                thread.join()
            os.close(self.wake_fd)

    # -- in each handler thread ----------------------------------------------------------------

    def _run(self, slot: SlotWriter) -> None:
        cond, jobs, done, wake = self._cond, self._jobs, self._done, self.wake_fd
        while True:
            with cond:
                while not jobs and not self._stopping:
                    cond.wait()
                if not jobs:
                    return
                conn = jobs.popleft()
            held = False
            slot.begin_request(time.monotonic())
            try:
                held = self._serve(conn)
            except BaseException:  # SystemExit in a handler must not cost the pool a thread
                log.exception("worker (pid %d) handler thread failed", os.getpid())
                conn.release()
            finally:
                slot.end_request(time.monotonic())
            done.append((conn, held))
            os.eventfd_write(wake, 1)

    def _serve(self, conn: Conn) -> bool:
        """One request on ``conn``; True if a handler holds it now (keep-alive)."""
        if conn.resumable is not None:
            return self._resume(conn)  # (False: it ended, or ends once its response is sent)
        conn.resumable = self._process(conn.server, conn.sock, conn.address)
        return conn.resumable is not None


def _not_here(conn: Conn) -> bool:
    raise AssertionError("with handler threads, requests are served in the threads")




class ThreadedMultiplexer(Multiplexer):
    """The multiplexer of a worker with handler threads: a connection with work goes to
    ``threads`` instead of being served in this thread.  ``changed(busy)`` is called (in this
    thread) whenever requests were handed out or came back, with the busy thread count."""

    busy_elsewhere = True

    def __init__(
        self, ep: select.epoll, servers: dict[int, socketserver.BaseServer],
        threads: HandlerThreads, interrupted: Callable[[], bool],
        empty_accept: Callable[[], None], limits: Limits, changed: Callable[[int], None],
    ) -> None:
        super().__init__(ep, servers, _not_here, self._to_threads, interrupted, empty_accept,
                         limits)
        self.threads = threads
        self.changed = changed
        ep.register(threads.wake_fd, select.EPOLLIN)

    def on_event(self, fd: int, events: int) -> None:
        if fd == self.threads.wake_fd:
            self._take_back()
        else:
            super().on_event(fd, events)

    def idle(self) -> bool:
        return not self.conns and not self.threads.pending

    def close(self) -> None:
        super().close()
        # Joined only when nothing runs (a graceful end): a quick stop leaves at once.
        self.threads.stop(join=not self.threads.pending)

    def _dispatch(self, conn: Conn) -> None:
        self.conns.pop(conn.fd, None)
        conn.phase = Phase.BUSY
        self.threads.submit(conn)
        if self.threads.saturated():
            self._pause_accepting()
        self.changed(self.threads.busy)

    def _to_threads(self, server: socketserver.BaseServer) -> Callable[[Any, Any], None]:
        """What serves a new connection on ``server``: handing it to a thread, in a Conn."""
        fd = server.socket.fileno()  # type: ignore[attr-defined]

        def serve(request: Any, address: Any) -> None:
            self._dispatch(Conn(request, address, server, self.ready_modes[fd]))

        return serve

    def _take_back(self) -> None:
        back = self.threads.completed()
        for conn, held in back:
            if held:
                self._held(conn)
            else:
                conn.phase = Phase.CLOSED
        if not back:
            return
        if not self.accepting and not self.draining:
            self._resume_accepting()
        self.changed(self.threads.busy)

    def _resume_accepting(self) -> None:
        if not self.threads.saturated():
            super()._resume_accepting()
