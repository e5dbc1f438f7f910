"""The master: forks the pool and supervises it.  It never accepts a connection.

The loop sleeps in one ``select`` over three kinds of fd and nothing else -- no poll interval:

* the signal self-pipe (signals, and other threads calling ``shutdown()``/``server_close()``),
* the report pipe, on which workers announce that they are ready,
* one pidfd per worker, readable when that worker exits.

Pidfds are why the master reaps only its own children: it waits on each worker's pid, never
``waitpid(-1)``, so a child the application forked in the master stays the application's to
collect.  They also need no SIGCHLD handler, so the loop works in a non-main thread too, where
no signal handler can be installed.

Each worker leads its own process group.  When a worker ends -- on its own, by a crash or
killed -- the master sends SIGKILL to that group, so subprocesses a handler started do not
outlive it.

Boot failure is not a crash: a worker that exits before it reported ready counts as a boot
failure; the next spawn waits a growing, jittered delay and probes with one worker at a time.
After ``max_boot_failures`` in a row the master stops the pool and ``run()`` raises
:class:`BootError`.  A worker that dies after it was ready is replaced at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import selectors
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import signals as sigs
from .worker import REPORT, REPORT_READY, ChildContext, WorkerInfo, run_worker

if TYPE_CHECKING:
    from .servers import PreforkMixIn

log = logging.getLogger("prefork.master")

MASTER_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)

BOOT_BACKOFF_BASE = 0.05  # seconds before the first retry after a boot failure
BOOT_BACKOFF_MAX = 5.0
# Without pidfds (old kernels) child exits are noticed by checking at this interval.
REAP_FALLBACK_INTERVAL = 0.5


class BootError(RuntimeError):
    """The workers kept dying before they reported ready; the pool was stopped."""

    exit_status = 3


def describe_status(status: int) -> str:
    """``exit status 1`` or ``killed by SIGKILL`` from a ``waitpid`` status."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class Master:
    """Supervises the pool of one server.

    Methods for the caller: run(), request_stop(graceful) -- the latter from any thread.
    The server's hooks are called here: pre_fork(worker) and worker_exit(worker, status) in the
    master, post_fork(worker) in the child.
    """

    def __init__(self, server: PreforkMixIn) -> None:
        self.server = server
        self.size = server.workers
        self.pid = os.getpid()
        self.thread_ident = threading.get_ident()
        self.workers: dict[int, WorkerInfo] = {}
        self.signals = sigs.SignalQueue(MASTER_SIGNALS)
        self.report_r, self.report_w = os.pipe()
        self.alive_r, self.alive_w = os.pipe()
        os.set_blocking(self.report_r, False)
        self.selector = selectors.DefaultSelector()
        self.use_pidfd = hasattr(os, "pidfd_open")
        self.stop_mode: str | None = None  # None, "graceful" or "quick"
        self.stop_deadline = 0.0
        self.kill_now = False
        self.boot_failures = 0
        self.boot_error: BootError | None = None
        self.spawn_not_before = 0.0
        self.ages = 0
        self._report_buf = b""
        self.on_signal: dict[int, Callable[[], None]] = {
            signal.SIGTERM: lambda: self._stop("graceful"),
            signal.SIGINT: lambda: self._stop("quick", escalate=True),
            signal.SIGQUIT: lambda: self._stop("quick", escalate=True),
            signal.SIGTTIN: lambda: self.scale(self.size + 1),
            signal.SIGTTOU: lambda: self.scale(self.size - 1),
            signal.SIGWINCH: self._on_winch,
        }

    # -- public -------------------------------------------------------------------------------

    def request_stop(self, graceful: bool = True) -> None:
        """Ask the loop to stop; safe from any thread (deque appends are atomic)."""
        self.signals.pending.append(signal.SIGTERM if graceful else signal.SIGQUIT)
        self.signals.wake()

    def run(self) -> None:
        """Spawn the pool and supervise it until a stop is requested; then stop it."""
        listener = self.server.socket
        was_blocking = listener.getblocking()
        listener.setblocking(False)  # shared by all workers: an empty accept must not block
        self.signals.install()
        self.selector.register(self.signals.read_fd, selectors.EVENT_READ)
        self.selector.register(self.report_r, selectors.EVENT_READ)
        log.info("master (pid %d) starting %d workers", self.pid, self.size)
        try:
            while self.stop_mode is None:
                self.spawn_missing()
                self._wait(self._timeout())
            self._stop_pool()
        finally:
            self._kill_all()
            self.signals.close()
            self.selector.close()
            for fd in (self.report_r, self.report_w, self.alive_r, self.alive_w):
                os.close(fd)
            with contextlib.suppress(OSError):
                listener.setblocking(was_blocking)
        if self.boot_error is not None:
            raise self.boot_error
        log.info("master (pid %d) stopped", self.pid)

    def scale(self, size: int) -> None:
        """Set the pool size within [1, max_children]; surplus workers drain and exit."""
        size = max(1, min(size, self.server.max_children))
        if size != self.size:
            log.info("master (pid %d) pool size %d -> %d", self.pid, self.size, size)
        self.size = size
        active = [w for w in self.workers.values() if not w.stopping]
        # Retire the youngest first: the oldest are warm.
        for info in sorted(active, key=lambda w: w.age, reverse=True)[: max(0, len(active) - size)]:
            self._signal_worker(info, signal.SIGTERM)
            info.stopping = True

    # -- the loop -----------------------------------------------------------------------------

    def _timeout(self) -> float | None:
        deadlines = []
        now = time.monotonic()
        if self.stop_mode is not None:
            deadlines.append(self.stop_deadline - now)
        elif self._missing() > 0:
            deadlines.append(self.spawn_not_before - now)
        if not self.use_pidfd:
            deadlines.append(REAP_FALLBACK_INTERVAL)
        return max(0.0, min(deadlines)) if deadlines else None

    def _wait(self, timeout: float | None) -> None:
        self.selector.select(timeout)
        for sig in self.signals.drain():
            handler = self.on_signal.get(sig)
            if handler is not None:
                handler()
        self._read_reports()
        self._reap()

    def _missing(self) -> int:
        return self.size - sum(1 for w in self.workers.values() if not w.stopping)

    def spawn_missing(self) -> None:
        if self.stop_mode is not None or time.monotonic() < self.spawn_not_before:
            return
        missing = self._missing()
        if self.boot_failures:
            # After a boot failure probe with one worker until one reports ready: no fork storm.
            booting = sum(1 for w in self.workers.values() if not w.ready)
            missing = min(missing, 1 - booting)
        for _ in range(missing):
            self.spawn()

    def _free_slot(self) -> int:
        used = {w.slot for w in self.workers.values()}
        return next(i for i in range(len(used) + 1) if i not in used)

    def spawn(self) -> WorkerInfo:
        self.ages += 1
        info = WorkerInfo(age=self.ages, slot=self._free_slot())
        self.server.pre_fork(info)
        ctx = ChildContext(
            master_pid=self.pid,
            report_fd=self.report_w,
            alive_fd=self.alive_r,
            blocked_mask=set(),
            close_fds=self._private_fds(),
        )
        ctx.blocked_mask = sigs.block(MASTER_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                run_worker(self.server, info, ctx)  # never returns
        finally:
            sigs.unblock(ctx.blocked_mask)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # also done in the child; whichever runs first wins
        info.pid, info.started = pid, time.monotonic()
        if self.use_pidfd:
            info.pidfd = os.pidfd_open(pid)
            self.selector.register(info.pidfd, selectors.EVENT_READ)
        self.workers[pid] = info
        log.debug("master (pid %d) spawned worker %d (pid %d)", self.pid, info.age, pid)
        return info

    def _private_fds(self) -> list[int]:
        """Fds of the master that a worker must not hold (above all the alive pipe's write end,
        whose last close is how workers learn the master is gone)."""
        fds = [self.alive_w, self.report_r, *self.signals.fds()]
        fds.extend(w.pidfd for w in self.workers.values() if w.pidfd is not None)
        with contextlib.suppress(NotImplementedError, ValueError):
            selector_fd = getattr(self.selector, "fileno", lambda: -1)()
            if selector_fd >= 0:
                fds.append(selector_fd)
        return fds

    def _read_reports(self) -> None:
        try:
            data = os.read(self.report_r, 64 * REPORT.size)
        except BlockingIOError:
            return
        buf = self._report_buf + data
        usable = len(buf) - len(buf) % REPORT.size
        self._report_buf = buf[usable:]
        for pid, event in REPORT.iter_unpack(buf[:usable]):
            info = self.workers.get(pid)
            if info is not None and event == REPORT_READY:
                info.ready = True
                self.boot_failures = 0
                log.info(
                    "worker %d (pid %d) ready in %.1f ms",
                    info.age, pid, (time.monotonic() - info.started) * 1000,
                )

    def _reap(self) -> None:
        for pid, info in list(self.workers.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # collected by someone else: status unknown
                done, status = pid, 255 << 8
            if done:
                self._on_exit(info, status)

    def _on_exit(self, info: WorkerInfo, status: int) -> None:
        del self.workers[info.pid]
        if info.pidfd is not None:
            self.selector.unregister(info.pidfd)
            os.close(info.pidfd)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(info.pid, signal.SIGKILL)  # whatever the handler left in the group
        code = os.waitstatus_to_exitcode(status)
        try:
            self.server.worker_exit(info, code)
        except Exception:
            log.exception("worker_exit hook failed for worker %d (pid %d)", info.age, info.pid)
        if self.stop_mode is not None or info.stopping:
            log.debug("worker %d (pid %d) stopped: %s", info.age, info.pid, describe_status(status))
        elif not info.ready:
            self._boot_failed(info, status)
        else:
            log.warning(
                "worker %d (pid %d) died: %s; replacing it",
                info.age, info.pid, describe_status(status),
            )

    def _boot_failed(self, info: WorkerInfo, status: int) -> None:
        self.boot_failures += 1
        limit = self.server.max_boot_failures
        if self.boot_failures >= limit:
            message = (
                f"workers fail to boot: {self.boot_failures} in a row, the last "
                f"({describe_status(status)}); stopping"
            )
            log.error("master (pid %d) %s", self.pid, message)
            self.boot_error = BootError(message)
            self._stop("quick")
            return
        delay = min(BOOT_BACKOFF_MAX, BOOT_BACKOFF_BASE * 2 ** (self.boot_failures - 1))
        delay *= random.uniform(0.5, 1.5)
        self.spawn_not_before = time.monotonic() + delay
        log.warning(
            "worker %d (pid %d) failed to boot: %s; retrying in %.2f s (%d/%d)",
            info.age, info.pid, describe_status(status), delay, self.boot_failures, limit,
        )

    # -- stopping -----------------------------------------------------------------------------

    def _stop(self, mode: str, escalate: bool = False) -> None:
        if self.stop_mode is None:
            self.stop_mode = mode
            graceful = mode == "graceful"
            timeout = self.server.graceful_timeout if graceful else self.server.quick_timeout
            self.stop_deadline = time.monotonic() + timeout
            log.info("master (pid %d) %s stop", self.pid, mode)
            sig = signal.SIGTERM if mode == "graceful" else signal.SIGQUIT
            for info in self.workers.values():
                self._signal_worker(info, sig)
        elif mode == "quick" and self.stop_mode == "graceful":
            self.stop_mode = "quick"
            quick_deadline = time.monotonic() + self.server.quick_timeout
            self.stop_deadline = min(self.stop_deadline, quick_deadline)
            for info in self.workers.values():
                self._signal_worker(info, signal.SIGQUIT)
        elif mode == "quick" and escalate:
            log.info("master (pid %d) second interrupt: killing the workers", self.pid)
            self.kill_now = True

    def _on_winch(self) -> None:
        # Keeping the master with no workers is part of live operations (not yet supported);
        # ignoring the signal keeps a terminal resize from touching the pool.
        log.debug("master (pid %d) ignores SIGWINCH", self.pid)

    def _signal_worker(self, info: WorkerInfo, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(info.pid, sig)

    def _stop_pool(self) -> None:
        while self.workers and not self.kill_now and time.monotonic() < self.stop_deadline:
            self._wait(self._timeout())
        if self.workers:
            log.warning(
                "master (pid %d) killing %d workers still running", self.pid, len(self.workers)
            )

    def _kill_all(self) -> None:
        """Last resort, also on an unexpected error in the loop: no worker outlives run()."""
        for info in list(self.workers.values()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(info.pid, signal.SIGKILL)
        for info in list(self.workers.values()):
            try:
                _, status = os.waitpid(info.pid, 0)
            except ChildProcessError:
                status = signal.SIGKILL
            self._on_exit(info, status)
