"""The worker: what a forked child does, from the fork to ``os._exit``.

A child never returns into master code.  :func:`run_worker` is called right after ``fork()``
returned 0 and ends in ``os._exit`` from a ``finally``, whatever happens in between.

Order of the first steps matters.  The master forks with its handled signals *blocked*, so the
child starts with them blocked too and nothing can run the master's handlers in the child.  The
child then leads its own process group, asks the kernel for SIGKILL when the master dies, closes
the master's private fds, installs its own handlers, and only then unblocks: a signal sent in
that window stays pending and is delivered to the child's own handler, not lost.

Accepting without a thundering herd: each worker's epoll holds the shared listening sockets
``EPOLLEXCLUSIVE`` (one idle worker woken per connection; an accept that finds nothing counts
as a spurious wake-up), its signal pipe, and the master's "alive" pipe, whose EOF means the
master is gone (the fallback for ``PR_SET_PDEATHSIG``).  Connections then wait in the
multiplexer (core/mux.py) until they have work.

Stopping: TERM (and HUP) are graceful -- the request in flight finishes, then the loop ends.
INT and QUIT are quick: an idle worker leaves at once; a busy one has its request abandoned by
an exception from the signal handler (the one handler that does more than record).
"""

from __future__ import annotations

import contextlib
import errno
import faulthandler
import logging
import os
import random
import select
import signal
import socketserver
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn, cast

from prefork.core import delegating, keepalive, pooled, privileges, stdfds, urgenthook
from prefork.core.affinity import pin_to_slot_cpu
from prefork.core.conn import Conn
from prefork.core.contract import (
    REPORT,
    REPORT_OVER_MEMORY,
    REPORT_READY,
    REPORT_RECYCLE,
    ChildContext,
    PoolServer,
    WorkerInfo,
    grace,
)
from prefork.core.dispatch import Bookkeeping, Serve, next_request, refuse_held, request_path
from prefork.core.errnos import BrokenWorker
from prefork.core.listeners import Limits
from prefork.core.memguard import BUDGET, memory_limit
from prefork.core.mux import Multiplexer
from prefork.core.parent import set_parent_death_signal, wait_for_parent
from prefork.core.pulling import Puller, StopPulling
from prefork.core.scoreboard import SlotWriter, State
from prefork.core.signals import SignalQueue, unblock
from prefork.core.threads import HandlerThreads, ThreadedMultiplexer
from prefork.ops import accesslog, titles
from prefork.ops.logs import capture_output, reopen_log_files, stack_dump_stream

log = logging.getLogger("prefork.worker")

GRACEFUL_SIGNALS = frozenset({signal.SIGTERM, signal.SIGHUP})
QUICK_SIGNALS = frozenset({signal.SIGINT, signal.SIGQUIT})
WORKER_SIGNALS = GRACEFUL_SIGNALS | QUICK_SIGNALS
# Master-only signals a stray ``kill`` might send to a worker: ignored there.  TTIN/TTOU also
# keep a background worker that touches the terminal from being stopped by job control.
IGNORED_SIGNALS = frozenset({signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH})
REOPEN_SIGNAL = signal.SIGUSR1  # reopen log files
# The master's request for a stack dump of a hung worker, answered by faulthandler from C, so
# it works even while Python code holds the GIL in a tight loop or sits in a C call.
DUMP_SIGNAL = signal.SIGUSR2

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_ORPHANED = 4  # the master was already gone when the worker started


class QuickExit(BaseException):
    """Raised inside a busy worker by a quick-stop signal to abandon the request in flight."""


def run_worker(server: PoolServer, info: WorkerInfo, ctx: ChildContext) -> NoReturn:
    """Entry point of the child; never returns."""
    status = EXIT_ERROR
    try:
        status = Worker(server, info, ctx).run()
    except QuickExit:
        status = EXIT_OK
    except BrokenWorker as exc:
        log.error("worker %d (pid %d) broken: %s", info.age, os.getpid(), exc)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else EXIT_ERROR
    except BaseException:
        log.exception("worker %d (pid %d) crashed", info.age, os.getpid())
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                status = status or EXIT_ERROR
        os._exit(status)


class Worker:
    """The accept loop of one child.  Methods: run() -> exit status."""

    def __init__(self, server: PoolServer, info: WorkerInfo, ctx: ChildContext) -> None:
        self.server = server
        # The same object seen as the socketserver it is mixed into.
        self.base = cast(socketserver.BaseServer, server)
        self.info = info
        self.ctx = ctx
        self.pid = os.getpid()
        self.signals = SignalQueue(WORKER_SIGNALS | {REOPEN_SIGNAL})
        self.book: Bookkeeping | None = None  # the request's begin and end (one thread)
        self.serving: dict[socketserver.BaseServer, Serve] = {}  # listener -> its request
        self._serve_held: Callable[[Conn, Any], bool] = refuse_held
        self.stop: str | None = None
        self.slot: SlotWriter | None = None
        self.recycle_after = 0  # requests; 0 = never
        self.title = titles.WorkerTitle(info.age, titles.name_of(server), self._label)
        self.threads: HandlerThreads | None = None  # handler threads (threads > 1)
        self.puller: Puller | None = None  # a server without a socket (core/pulling.py)

    # -- boot ---------------------------------------------------------------------------------

    def _setup_process(self) -> bool:
        # Both sides call setpgid, so the group exists whichever runs first.
        with contextlib.suppress(PermissionError):  # already done by the master
            os.setpgid(0, 0)
        # Before the death signal: a change of credentials clears it.
        privileges.drop(self.ctx.credentials)
        if self.ctx.via_template:
            wait_for_parent(self.ctx.master_pid)
        # SIGKILL, not a catchable signal: a worker stuck in C code must die with its master.
        # Checked after arming: the master may have died before the prctl call.
        set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != self.ctx.master_pid:
            return False
        for fd in self.ctx.close_fds:
            try:
                os.close(fd)
            except OSError as exc:
                if exc.errno != errno.EBADF:
                    raise
        stdfds.set_up()  # stdin on /dev/null; no client socket ever takes fds 0-2 (stdfds.py)
        capture_output()  # --capture-output: stdout and stderr on the log file (ops/logs.py)
        self.signals.on_record = self._on_signal_recorded
        self.signals.install()
        for sig in IGNORED_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        dump_to = stack_dump_stream()
        faulthandler.register(DUMP_SIGNAL, file=dump_to, all_threads=True)  # type: ignore[arg-type]
        unblock(self.ctx.blocked_mask)
        return True

    def _on_signal_recorded(self, signum: int) -> None:
        busy = self.book is not None and self.book.busy
        if signum in QUICK_SIGNALS and busy:
            raise QuickExit
        if not busy:  # else the loop looks when the request is done (_handle_signals)
            self.signals.ensure_intact()
        if signum in WORKER_SIGNALS and self.puller is not None and self.puller.pulling:
            raise StopPulling

    def _report(self, event: int) -> None:
        os.write(self.ctx.report_fd, REPORT.pack(self.pid, event))

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> int:
        if not self._setup_process():
            return EXIT_ORPHANED
        server = self.server
        if server.cpu_affinity:  # --cpu-affinity: this worker on one CPU (core/affinity.py)
            pin_to_slot_cpu(self.info.slot)
        self.slot = slot = self.ctx.board.writer(self.info.slot, self.pid)
        self.title.show("booting")
        pooled.attach(self._report)  # server.shutdown() in a handler (core/pooled.py)
        if not self.ctx.app_loaded:
            server.load_app()
        server.post_fork(self.info)
        if memory_limit(server):  # a budget the kernel enforces (core/memguard.py)
            BUDGET.arm(memory_limit(server), lambda: self._report(REPORT_OVER_MEMORY),
                       self.ctx.board.threads if self.ctx.board.threads > 1 else 0)
        if server.max_requests:
            self.recycle_after = server.max_requests + random.randint(
                0, max(0, server.max_requests_jitter)
            )

        # Every listener, each with the server object whose get_request() reads it.
        listeners = {s.socket.fileno(): cast(socketserver.BaseServer, s)
                     for s in server.listening_servers()}
        ep = select.epoll()
        try:
            exclusive = getattr(select, "EPOLLEXCLUSIVE", 0)
            for fd in listeners:
                ep.register(fd, select.EPOLLIN | exclusive)
            ep.register(self.signals.read_fd, select.EPOLLIN)
            ep.register(self.ctx.alive_fd, select.EPOLLIN)
            slot.set_state(State.IDLE, time.monotonic())
            self.title.show("idle")
            self._report(REPORT_READY)
            log.debug("worker %d (pid %d) ready", self.info.age, self.pid)
            if server.pulls_requests():
                self._pull(ep)
            else:
                self._loop(ep, listeners)
                delegating.finish(server.listening_servers(), self.stop == "graceful")
        finally:
            ep.close()
        served = self.ctx.board.read(self.info.slot).requests
        log.debug("worker %d (pid %d) exiting (%s): %d requests, %d empty accepts",
                  self.info.age, self.pid, self.stop, served, slot.empty_accepts)
        return EXIT_OK

    def _label(self, state: str) -> tuple[str, int]:
        """What the title shows: with threads, the busy count and all threads' requests."""
        if (threads := self.threads) is None:
            return state, self.slot.requests if self.slot else 0
        text = f"busy {threads.busy}/{threads.count}" if state == "busy" else state
        return text, threads.served

    def _loop(self, ep: select.epoll, listeners: dict[int, socketserver.BaseServer]) -> None:
        server = self.base
        sig_fd, alive_fd = self.signals.read_fd, self.ctx.alive_fd
        # socketserver calls service_actions() at least every poll_interval; only a server that
        # overrides it pays for a timed wake-up (and for the call).
        overridden = type(server).service_actions is not socketserver.BaseServer.service_actions
        timeout = self.ctx.poll_interval if overridden else -1.0
        keepalive.take_over(listeners.values())  # http.server handlers: KeepAliveHTTPMixIn
        urgenthook.watch_servers(listeners.values())  # handlers with handle_urgent()
        limits = Limits.of(self.server, grace(self.server))  # (core/waits.py)
        assert self.slot is not None
        if self.ctx.board.threads > 1:
            mux = self._threaded(ep, listeners, limits)
        else:
            self.book = book = Bookkeeping(
                self.slot, self.title, self.signals.pending, QUICK_SIGNALS,
                lambda: self.stop is not None, lambda: self._report(REPORT_RECYCLE),
                self.recycle_after)
            self.serving = {s: book.serving(s) for s in listeners.values()}
            self._serve_held = book.counted(next_request, refuse_held)
            mux = Multiplexer(ep, listeners, self._serve, self.serving.__getitem__,
                              self._interrupted, self.slot.empty_accept, limits)
            mux.serve_head = self._serve_held
        # The loop is on every connection's path: what has nothing to do is not called.
        poll, monotonic, pending, accept = ep.poll, time.monotonic, self.signals.pending, mux.accept
        ready, deadlines, title = mux.ready, mux.deadlines.heap, self.title
        # While a title change is due the wait is bounded, and a wait that times out shows it.
        due_wait = titles.TITLE_INTERVAL if timeout < 0 else min(timeout, titles.TITLE_INTERVAL)
        access = accesslog.buffering()  # its lines written in batches (ops/accesslog.py)
        now = monotonic()
        try:
            while True:
                wait = due_wait if title.due else timeout
                if ready or not mux.accepting or (access and access.pending):
                    wait = mux.timeout(wait, now, access)
                elif deadlines:  # (mux.timeout's answer when only a deadline bounds the wait)
                    left = deadlines[0][0] - now
                    left = left if left > 0.0 else 0.0
                    wait = left if wait < 0 or left < wait else wait
                events = poll(wait)
                look_at_title = not events
                for fd, fd_events in events:
                    # A signal's handler has run (``pending``) before the poll returned: a
                    # quick stop is seen before the next connection is taken.
                    if (pending or self.stop is not None) and self._interrupted():
                        return
                    if fd in listeners:
                        # Even when stopping gracefully: with EPOLLEXCLUSIVE this worker may
                        # be the only one the kernel woke for a connection, and leaving it
                        # would strand it in the backlog until the next arrival wakes someone.
                        accept(fd)
                    elif fd == sig_fd:
                        self._handle_signals()
                    elif fd == alive_fd:
                        self.stop = "master gone"
                    else:
                        mux.on_event(fd, fd_events)
                        look_at_title = True
                # One clock read for the title, the deadlines and the next wait; again after
                # pipelined requests served (a review: a deadline that passed while they ran
                # was kept, and the next wait counted from before them).
                now = monotonic()
                # A wait that timed out, or events for waiting connections (which may never
                # let the wait time out), show a title change that has come due.
                if look_at_title and title.due and now >= title.due:
                    title.lapsed(self.stop is None)
                if ready:
                    mux.run_ready()
                    now = monotonic()
                if not mux.accepting or (deadlines and deadlines[0][0] <= now):
                    mux.expire(now)  # (a deadline came, or the listeners are paused)
                if self.stop is not None or pending:
                    if self._interrupted():
                        break
                    if self.stop is not None:
                        mux.drain()
                        if mux.idle():
                            break
                        continue
                if overridden:
                    server.service_actions()
        finally:
            accesslog.flush_pending()
            mux.close()

    def _pull(self, ep: select.epoll) -> None:
        """The loop of a server without a socket: get_request() called here (core/pulling.py),
        one request at a time (``threads`` does not apply)."""
        assert self.slot is not None
        server = self.base
        overridden = type(server).service_actions is not socketserver.BaseServer.service_actions
        self.book = book = Bookkeeping(
            self.slot, self.title, self.signals.pending, QUICK_SIGNALS,
            lambda: self.stop is not None, lambda: self._report(REPORT_RECYCLE),
            self.recycle_after)
        self.puller = Puller(server, ep, book.serving(server), self._on_own_fd,
                             lambda: self._interrupted() or self.stop is not None,
                             self.ctx.poll_interval if overridden else None, self.title)
        self.puller.run()

    def _on_own_fd(self, fd: int) -> None:
        """An event on the signal pipe or the master's alive pipe."""
        if fd == self.signals.read_fd:
            self._handle_signals()
        elif fd == self.ctx.alive_fd:
            self.stop = "master gone"

    def _threaded(self, ep: select.epoll, listeners: dict[int, socketserver.BaseServer],
                  limits: Limits) -> Multiplexer:
        """The multiplexer handing requests to handler threads (core/threads.py), started now
        that the worker is set up; one scoreboard slot each."""
        board, index = self.ctx.board, self.info.slot
        slots = [board.thread_writer(index, t) for t in range(1, board.threads + 1)]
        paths = {s: request_path(s) for s in listeners.values()}

        def process(server: socketserver.BaseServer, request: Any, address: Any) -> Any:
            return paths[server](request, address)

        self.threads = HandlerThreads(slots, process, next_request)
        assert self.slot is not None
        return ThreadedMultiplexer(ep, listeners, self.threads, self._interrupted,
                                   self.slot.empty_accept, limits, self._threads_changed)

    def _threads_changed(self, busy: int) -> None:
        """Requests went to the handler threads or came back: title, recycling."""
        assert self.threads is not None
        if self.stop is None:
            self.title.request("busy" if busy else "idle", time.monotonic())
        if self.recycle_after and self.threads.served >= self.recycle_after:
            self.recycle_after = 0  # reported once
            self._report(REPORT_RECYCLE)

    def _interrupted(self) -> bool:
        """Whether the loop must end now (a quick stop, the master gone); handles signals."""
        if self.signals.pending:
            self._handle_signals()
        return self.stop is not None and self.stop != "graceful"

    def _handle_signals(self) -> None:
        self.signals.ensure_intact()
        for sig in self.signals.drain():
            if sig in QUICK_SIGNALS:
                self.stop = "quick"
            elif sig in GRACEFUL_SIGNALS and self.stop is None:
                self.stop = "graceful"
                assert self.slot is not None
                self.slot.set_state(State.DRAINING, time.monotonic())
                self.title.show("draining")
            elif sig == REOPEN_SIGNAL:
                reopen_log_files()

    def _serve(self, conn: Conn) -> bool:
        """One request on ``conn`` (a connection that waited, or one a handler holds); True if
        a handler holds it now (keep-alive)."""
        if conn.resumable is None:
            conn.resumable = self.serving[conn.server](conn.sock, conn.address)
            return conn.resumable is not None
        return self._serve_held(conn, None)
