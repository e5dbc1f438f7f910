"""The master: forks the pool and supervises it.  It never accepts a connection.

The loop sleeps in one ``select`` over a few fds and wakes for nothing else -- no poll interval:

* the signal self-pipe (signals, and other threads calling ``shutdown()``/``server_close()``),
* the report pipe, on which workers say they are ready or due for recycling,
* one pidfd per worker, readable when that worker exits,
* the control socket, when one is configured.

Its only timed wake-ups are deadlines it owns: a boot back-off, a stop's grace period, a
``max_age``, and -- only when ``timeout`` or ``max_memory`` is set -- a periodic look at the
scoreboard or at psutil, because a worker that hangs cannot announce it.

Pidfds are why the master reaps only its own children: it waits on each worker's pid, never
``waitpid(-1)``, so a child the application forked in the master stays the application's to
collect.  They need no SIGCHLD handler either, so the loop also works in a non-main thread.

Each worker leads its own process group.  When a worker ends -- on its own, by a crash, or
killed -- the master sends SIGKILL to that group, so subprocesses a handler started do not
outlive it.

Boot failure is not a crash: a worker that exits before it reported ready counts as a boot
failure; the next spawn waits a growing, jittered delay and probes with one worker at a time.
After ``max_boot_failures`` in a row the master stops the pool and ``run()`` raises
:class:`BootError`.  A worker that dies after it was ready is replaced at once.

Generations: a reload (HUP) starts a complete new generation next to the old one and retires
the old one only when every new worker has reported ready; if a new worker fails to boot, the
new generation is stopped and the old one keeps serving.  The listening socket never closes, so
connections in the backlog are served by whichever generation accepts them.  Recycling
(``max_requests``, ``max_age``, ``max_memory``) likewise starts the replacement first and
retires the old worker once the replacement is ready, at most ``max_recycling`` at a time.
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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prefork.core import signals as sigs
from prefork.core.scoreboard import Scoreboard
from prefork.core.worker import (
    REPORT,
    REPORT_READY,
    REPORT_RECYCLE,
    ChildContext,
    WorkerInfo,
    run_worker,
)
from prefork.master.policies import PolicyMixIn
from prefork.master.upgrade import ENV_OLD_MASTER, exec_new_master
from prefork.ops import titles
from prefork.ops.control import ControlServer, scale_target
from prefork.ops.logs import reopen_log_files
from prefork.ops.metrics import MetricsServer
from prefork.ops.pidfile import remove_pidfile, write_pidfile
from prefork.ops.sdnotify import Notifier
from prefork.ops.status import status_rows

if TYPE_CHECKING:
    from prefork.core.servers import PreforkMixIn

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
# Stop requests from other threads (shutdown(), server_close()), queued like signals.
STOP_GRACEFUL, STOP_QUICK = -1, -2


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


@dataclass
class Reload:
    """A reload in progress: the generation it replaces and how to undo the preparation."""

    old_generation: int
    rollback: Callable[[], None]


class Master(PolicyMixIn):
    """Supervises the pool of one server.

    Methods for the caller: run(); request_stop(graceful) from any thread.  From the loop (the
    signal table): reload(), scale(size), pause(), reopen_logs().
    The server's hooks are called here: pre_fork(worker), worker_exit(worker, status) and
    prepare_reload() in the master; post_fork(worker) in the child.
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
        # Two generations may run side by side during a reload.
        self.board = Scoreboard(2 * server.max_children)
        self.notifier = Notifier(unset=True)
        self.control: ControlServer | None = None
        self.metrics: MetricsServer | None = None
        self.retired_requests = 0  # requests served by workers already reaped
        self.use_pidfd = hasattr(os, "pidfd_open")
        self.generation = 1
        self.reloading: Reload | None = None
        self.reload_queued = False
        self.paused = False
        self.announced = False
        self.stop_mode: str | None = None  # None, "graceful" or "quick"
        self.stop_deadline = 0.0
        self.kill_now = False
        self.boot_failures = 0
        self.boot_error: BootError | None = None
        self.spawn_not_before = 0.0
        self.next_memory_check = 0.0
        self.next_adapt = 0.0
        self.recycle_queue: deque[int] = deque()  # pids due for recycling, in order
        self.replacing: dict[int, int] = {}  # replacement pid -> pid it replaces
        self.restarts: dict[str, int] = {}  # reason -> count, for status and metrics
        self.ages = 0
        self.upgrade_pid = 0  # the new master started by USR2, until it takes over or fails
        self.upgrade_queued = False
        self.upgrade_pidfd: int | None = None
        self.handed_off = False
        old = os.environ.pop(ENV_OLD_MASTER, "")
        # Only a parent can be the master we replace: a stale variable must not kill a stranger.
        self.old_master = int(old) if old.isdigit() and int(old) == os.getppid() else 0
        self._report_buf = b""
        self.on_signal: dict[int, Callable[[], None]] = {
            signal.SIGTERM: lambda: self._stop("graceful", close=True),
            signal.SIGINT: lambda: self._stop("quick", escalate=True, close=True),
            signal.SIGQUIT: lambda: self._stop("quick", escalate=True, close=True),
            STOP_GRACEFUL: lambda: self._stop("graceful"),
            STOP_QUICK: lambda: self._stop("quick", escalate=True),
            signal.SIGHUP: self.reload,
            signal.SIGTTIN: lambda: self.scale(self.size + 1),
            signal.SIGTTOU: lambda: self.scale(self.size - 1),
            signal.SIGUSR1: self.reopen_logs,
            signal.SIGWINCH: self.pause,
            signal.SIGUSR2: self.upgrade,
        }

    # -- public -------------------------------------------------------------------------------

    def request_stop(self, graceful: bool = True) -> None:
        """Ask the loop to stop; safe from any thread (deque appends are atomic).  Unlike the
        stop signals, this keeps the listening sockets open: socketserver's ``shutdown()``
        leaves closing to ``server_close()``."""
        self.signals.pending.append(STOP_GRACEFUL if graceful else STOP_QUICK)
        self.signals.wake()

    def run(self) -> None:
        """Spawn the pool and supervise it until a stop is requested; then stop it."""
        # Shared by all workers, an empty accept must not block.  The flag belongs to the open
        # file, which an upgraded or previous master may share: it is set, never restored
        # (socketserver's own methods select before they accept, so they do not mind).
        for server in self.server.listening_servers():
            server.socket.setblocking(False)
        self.signals.install()
        self.selector.register(self.signals.read_fd, selectors.EVENT_READ)
        self.selector.register(self.report_r, selectors.EVENT_READ)
        try:
            if not self.old_master:  # the new master of an upgrade takes these over when ready
                self._take_over()
            if self.server.metrics:
                try:
                    self.metrics = MetricsServer(self.server.metrics, self.status)
                except OSError as exc:
                    raise OSError(exc.errno, f"metrics {self.server.metrics}: "
                                  f"{exc.strerror or exc}") from None
                self.metrics.register(self.selector)
                log.info("master (pid %d) metrics on http://%s:%d/metrics", self.pid,
                         *self.metrics.address[:2])
            log.info("master (pid %d) starting %d workers", self.pid, self.size)
            self._title()
            while self.stop_mode is None:
                self.spawn_missing()
                self._wait(self._timeout())
            self._stop_pool()
        finally:
            self._kill_all()
            if self.stop_mode is None:  # an unexpected error: _stop() did not say it
                self.notifier.stopping()
            if self.control is not None:
                self.control.close()
            if self.metrics is not None:
                self.metrics.close()
            self.signals.close()
            self.selector.close()
            self.board.close()
            for fd in (self.report_r, self.report_w, self.alive_r, self.alive_w):
                os.close(fd)
            if self.server.pidfile:
                remove_pidfile(self.server.pidfile)
        if self.boot_error is not None:
            raise self.boot_error
        log.info("master (pid %d) stopped", self.pid)

    def scale(self, size: int) -> None:
        """Set the pool size within [1, max_children]; surplus workers drain and exit."""
        self.paused = False
        size = max(1, min(size, self.server.max_children))
        if size != self.size:
            log.info("master (pid %d) pool size %d -> %d", self.pid, self.size, size)
        self.size = size
        active = self._current()
        # Retire the youngest first: the oldest are warm.
        for info in sorted(active, key=lambda w: w.age, reverse=True)[: max(0, len(active) - size)]:
            self._retire(info)
        self._title()

    def reload(self) -> None:
        """Start a new generation; the old one retires once the new one is ready."""
        if self.stop_mode is not None:
            return
        if self.reloading is not None:
            self.reload_queued = True  # one more after this one: signals are not lost
            log.info("master (pid %d) reload queued behind generation %d", self.pid,
                     self.generation)
            return
        self.paused = False
        try:
            rollback = self.server.prepare_reload()
        except Exception:
            log.exception("master (pid %d) reload failed; generation %d keeps serving",
                          self.pid, self.generation)
            return
        self.reloading = Reload(self.generation, rollback)
        self.generation += 1
        self.notifier.reloading(f"starting generation {self.generation}")
        log.info("master (pid %d) reload: starting generation %d", self.pid, self.generation)
        self.size = self.server.workers  # prepare_reload may have changed it
        self._title()

    def pause(self) -> None:
        """Stop all workers (gracefully), keep the master and its sockets.  HUP or TTIN resume."""
        if self.stop_mode is not None:
            return
        log.info("master (pid %d) stopping all workers; HUP or TTIN to resume", self.pid)
        self.paused = True
        for info in list(self.workers.values()):  # every generation, also one mid-reload
            if not info.stopping:
                self._retire(info)
        # A reload in progress is over: resuming starts workers of the newest generation.
        self.reloading, self.reload_queued = None, False

    def reopen_logs(self) -> None:
        reopen_log_files()
        log.info("master (pid %d) reopened log files", self.pid)
        for info in self.workers.values():
            self._signal_worker(info, signal.SIGUSR1)

    # -- the loop -----------------------------------------------------------------------------

    def _current(self) -> list[WorkerInfo]:
        """Workers of the current generation that are not on their way out."""
        return [w for w in self.workers.values()
                if w.generation == self.generation and not w.stopping]

    def _missing(self) -> int:
        if self.paused:
            return 0
        # A worker due for recycling still counts until its replacement is ready.
        return self.size - len(self._current())

    def _timeout(self) -> float | None:
        now = time.monotonic()
        deadlines = []
        if self.stop_mode is not None:
            deadlines.append(self.stop_deadline)
        elif self._missing() > 0:
            deadlines.append(self.spawn_not_before)
        deadlines.extend(w.kill_at for w in self.workers.values() if w.kill_at)
        deadlines.extend(w.recycle_at for w in self.workers.values() if w.recycle_at)
        if self.server.request_timeout:
            # A hung worker cannot say so: look at the scoreboard a few times per timeout.
            deadlines.append(now + min(1.0, self.server.request_timeout / 4))
        if self.server.max_memory:
            deadlines.append(self.next_memory_check)
        if self._adaptive():
            deadlines.append(self.next_adapt)
        if not self.use_pidfd:
            deadlines.append(now + REAP_FALLBACK_INTERVAL)
        deadlines.extend(d for e in self._endpoints() if (d := e.deadline()) is not None)
        return max(0.0, min(deadlines) - now) if deadlines else None

    def _wait(self, timeout: float | None) -> None:
        for key, mask in self.selector.select(timeout):
            if callable(key.data):  # the control and metrics endpoints' sockets
                key.data(mask)
            elif key.fd == self.upgrade_pidfd:
                self._upgrade_exited()
        now = time.monotonic()
        for endpoint in self._endpoints():
            endpoint.expire(now)
        for sig in self.signals.drain():
            handler = self.on_signal.get(sig)
            if handler is not None:
                handler()
        self._read_reports()
        self._reap()
        self._enforce_deadlines()
        self._progress()

    def _endpoints(self) -> list[ControlServer | MetricsServer]:
        return [e for e in (self.control, self.metrics) if e is not None]

    def spawn_missing(self) -> None:
        if self.stop_mode is not None or time.monotonic() < self.spawn_not_before:
            return
        missing = self._missing()
        if self.boot_failures:
            # After a boot failure probe with one worker until one reports ready: no fork storm.
            booting = sum(1 for w in self.workers.values() if not w.ready)
            missing = min(missing, 1 - booting)
        for _ in range(missing):
            if self._try_spawn() is None:
                break

    def _try_spawn(self) -> WorkerInfo | None:
        """spawn(), with a failure (a pre_fork hook raising, fork() refused by a task limit)
        counted as a boot failure instead of taking the running pool down."""
        try:
            return self.spawn()
        except Exception as exc:
            log.exception("master (pid %d) cannot start a worker", self.pid)
            self._boot_failed(f"{type(exc).__name__}: {exc}", None)
            return None

    def _free_slot(self) -> int:
        used = {w.slot for w in self.workers.values()}
        return next(i for i in range(self.board.slots) if i not in used)

    def spawn(self) -> WorkerInfo:
        self.ages += 1
        info = WorkerInfo(age=self.ages, slot=self._free_slot(), generation=self.generation)
        self.server.pre_fork(info)
        ctx = ChildContext(
            master_pid=self.pid,
            report_fd=self.report_w,
            alive_fd=self.alive_r,
            board=self.board,
            blocked_mask=set(),
            close_fds=self._private_fds(),
        )
        self.board.reset(info.slot, 0, info.generation, time.monotonic())
        ctx.blocked_mask = sigs.block(MASTER_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                run_worker(self.server, info, ctx)  # never returns
        except BaseException:
            self.board.clear(info.slot)
            raise
        finally:
            sigs.unblock(ctx.blocked_mask)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # also done in the child; whichever runs first wins
        info.pid, info.started = pid, time.monotonic()
        if self.server.max_age:
            jitter = random.uniform(0, self.server.max_age * 0.1)
            info.recycle_at = info.started + self.server.max_age + jitter
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
        if self.upgrade_pidfd is not None:
            fds.append(self.upgrade_pidfd)
        # Everything the loop watches: pidfds, the endpoints' sockets and their connections.
        fds.extend(key.fd for key in self.selector.get_map().values())
        fds.extend(e.fileno() for e in self._endpoints())  # also while one pauses accepting
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
            if info is None:
                continue
            if event == REPORT_READY:
                info.ready = True
                self.boot_failures = 0
                log.info(
                    "worker %d (pid %d) ready in %.1f ms",
                    info.age, pid, (time.monotonic() - info.started) * 1000,
                )
            elif event == REPORT_RECYCLE:
                served = self.board.read(info.slot).requests
                self._queue_recycle(info, "max_requests", f" after {served} requests")

    def _reap(self) -> None:
        for pid, info in list(self.workers.items()):
            try:
                exited = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:  # collected by someone else: status unknown, and the
                self._on_exit(info, 255 << 8)  # pid may be reused already: no killpg
                continue
            if exited is None:
                continue
            # Still a zombie, so the pid (and the group id) cannot have been reused: take down
            # whatever the handler left in the group, then collect the worker.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            self._on_exit(info, status)

    def _on_exit(self, info: WorkerInfo, status: int) -> None:
        del self.workers[info.pid]
        if info.pidfd is not None:
            self.selector.unregister(info.pidfd)
            os.close(info.pidfd)
        code = os.waitstatus_to_exitcode(status)
        try:
            self.server.worker_exit(info, code)
        except Exception:
            log.exception("worker_exit hook failed for worker %d (pid %d)", info.age, info.pid)
        self.retired_requests += self.board.read(info.slot).requests
        self.board.clear(info.slot)
        with contextlib.suppress(ValueError):
            self.recycle_queue.remove(info.pid)
        replaced = self.replacing.pop(info.pid, None)
        if replaced is not None and replaced in self.workers:
            self.workers[replaced].replacement = 0  # its replacement died: pick it up again
            self.recycle_queue.appendleft(replaced)
        if self.stop_mode is not None or info.stopping:
            log.debug("worker %d (pid %d) stopped: %s", info.age, info.pid, describe_status(status))
            return
        if not info.ready:
            if self.reloading is not None and info.generation == self.generation:
                self._abort_reload(info, status)
            else:
                self._boot_failed(describe_status(status), info)
            return
        self.restarts["crash"] = self.restarts.get("crash", 0) + 1
        log.warning(
            "worker %d (pid %d) died: %s; replacing it", info.age, info.pid, describe_status(status)
        )

    def _boot_failed(self, why: str, info: WorkerInfo | None) -> None:
        self.boot_failures += 1
        limit = self.server.max_boot_failures
        if self.boot_failures >= limit:
            message = (
                f"workers fail to boot: {self.boot_failures} in a row, the last ({why}); stopping"
            )
            log.error("master (pid %d) %s", self.pid, message)
            self.boot_error = BootError(message)
            self._stop("quick")
            return
        delay = min(BOOT_BACKOFF_MAX, BOOT_BACKOFF_BASE * 2 ** (self.boot_failures - 1))
        delay *= random.uniform(0.5, 1.5)
        self.spawn_not_before = time.monotonic() + delay
        who = f"worker {info.age} (pid {info.pid})" if info else "a new worker"
        log.warning("%s failed to boot: %s; retrying in %.2f s (%d/%d)",
                    who, why, delay, self.boot_failures, limit)

    # -- reload and recycling -----------------------------------------------------------------

    def _progress(self) -> None:
        """Finish a reload whose new generation is ready; start recycling replacements."""
        if self.reloading is not None and self.stop_mode is None:
            current = self._current()
            if len(current) >= self.size and all(w.ready for w in current):
                old = self.reloading.old_generation
                for info in list(self.workers.values()):
                    if info.generation < self.generation and not info.stopping:
                        self._retire(info)
                self.reloading = None
                self.restarts["reload"] = self.restarts.get("reload", 0) + 1
                log.info("master (pid %d) generation %d ready; generation %d retiring",
                         self.pid, self.generation, old)
                self._announce()
                if self.reload_queued:
                    self.reload_queued = False
                    self.reload()
        elif self.stop_mode is None and not self.announced and self.workers and all(
            w.ready for w in self._current()
        ) and len(self._current()) >= self.size:
            self._announce()
        self._recycle()

    def _take_over(self) -> None:
        """Claim the pid file and the control socket.  The new master of an upgrade does this
        only once its pool is ready: if it fails before, the old master keeps both."""
        if self.server.pidfile:
            write_pidfile(self.server.pidfile)
        if self.server.control:
            if self.old_master:  # the old master's socket: it will not remove ours (inode)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.server.control)
            self.control = ControlServer(self.server.control, self._on_control)
            self.control.register(self.selector)

    def _announce(self) -> None:
        self.announced = True
        if self.old_master:
            # We are the new master of an upgrade: the old one retires now that we serve.
            self._take_over()
            self.notifier.mainpid(self.pid)
            log.info("master (pid %d) ready: asking the old master (pid %d) to retire",
                     self.pid, self.old_master)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.old_master, signal.SIGTERM)
            self.old_master = 0
        self.notifier.ready(f"{len(self._current())} workers, generation {self.generation}")

    def _abort_reload(self, info: WorkerInfo, status: int) -> None:
        assert self.reloading is not None
        old = self.reloading.old_generation
        log.error(
            "master (pid %d) generation %d failed to boot (worker %d, pid %d: %s); "
            "generation %d keeps serving",
            self.pid, self.generation, info.age, info.pid, describe_status(status), old,
        )
        for other in list(self.workers.values()):
            if other.generation == self.generation:
                # A ready one may have been woken for a connection: it serves that, then exits.
                self._retire(other, sig=signal.SIGTERM if other.ready else signal.SIGQUIT)
        try:
            self.reloading.rollback()
        except Exception:
            log.exception("master (pid %d) reload rollback failed", self.pid)
        self.generation, self.reloading = old, None
        self.size = self.server.workers
        self.notifier.ready(f"reload failed; generation {old} serving")
        self._title()
        if self.reload_queued:  # a HUP sent meanwhile (perhaps with the fix) is not lost
            self.reload_queued = False
            self.reload()

    # -- control socket -----------------------------------------------------------------------

    def _on_control(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request["command"]
        if command == "reload":
            self.reload()
        elif command == "scale":
            self.scale(scale_target(request["workers"], self.size))
        elif command == "stop":
            self._stop("graceful" if request.get("graceful", True) else "quick")
        return self.status()

    def status(self) -> dict[str, Any]:
        rows = status_rows(self.board, self.workers.values())
        return {
            "master": {
                "pid": self.pid,
                "name": self.server.name,
                "size": self.size,
                "generation": self.generation,
                "reloading": self.reloading is not None,
                "paused": self.paused,
                "stopping": self.stop_mode,
                "restarts": dict(self.restarts),
                "requests_total": self.retired_requests + sum(r["requests"] for r in rows),
            },
            "workers": rows,
        }

    def _title(self) -> None:
        titles.set_title(titles.master_title(
            self.server.name, self.size, self.server.listener_names()
        ))

    # -- stopping -----------------------------------------------------------------------------

    # -- upgrade in place (USR2) ---------------------------------------------------------------

    def upgrade(self) -> None:
        """Execute a new master with the listening socket inherited (the systemd protocol:
        ``LISTEN_FDS``); it retires this one with SIGTERM once its pool is ready.  If it dies
        before that, this master keeps serving."""
        argv = self.server.upgrade_argv
        if self.stop_mode is not None:
            return
        if self.upgrade_pid:
            self.upgrade_queued = True  # tried again if this one fails: signals are not lost
            return
        if not argv:
            log.warning("master (pid %d) ignores SIGUSR2: this server cannot re-execute itself",
                        self.pid)
            return
        fds = [s.socket.fileno() for s in self.server.listening_servers()]
        env = dict(os.environ)
        env[ENV_OLD_MASTER] = str(self.pid)
        if self.notifier.address:
            env["NOTIFY_SOCKET"] = self.notifier.address
        pid = exec_new_master(argv, fds, env, MASTER_SIGNALS)
        self.upgrade_pid = pid
        self.upgrade_pidfd = os.pidfd_open(pid)
        self.selector.register(self.upgrade_pidfd, selectors.EVENT_READ)
        log.info("master (pid %d) upgrade: started new master (pid %d)", self.pid, pid)

    def _upgrade_exited(self) -> None:
        assert self.upgrade_pidfd is not None
        try:
            _, status = os.waitpid(self.upgrade_pid, os.WNOHANG)
        except ChildProcessError:
            status = 0
        self.selector.unregister(self.upgrade_pidfd)
        os.close(self.upgrade_pidfd)
        if not self.handed_off:
            log.error("master (pid %d) new master (pid %d) failed: %s; this one keeps serving",
                      self.pid, self.upgrade_pid, describe_status(status))
        self.upgrade_pid, self.upgrade_pidfd = 0, None
        if self.upgrade_queued and not self.handed_off:
            self.upgrade_queued = False
            self.upgrade()

    def _stop(self, mode: str, escalate: bool = False, close: bool = False) -> None:
        if close:
            # A stop signal ends the process: stop taking connections now, so clients fail fast
            # instead of queueing behind the drain (the workers' copies close as they exit).
            for server in self.server.listening_servers():
                server.socket.close()
        if self.upgrade_pid and not self.handed_off and mode == "graceful":
            # The TERM that retires us after an upgrade: the new master owns the socket file.
            self.handed_off = True
            self.server.keep_socket_file()
            log.info("master (pid %d) handing over to the new master (pid %d)",
                     self.pid, self.upgrade_pid)
        if self.stop_mode is None:
            self.stop_mode = mode
            graceful = mode == "graceful"
            timeout = self.server.graceful_timeout if graceful else self.server.quick_timeout
            self.stop_deadline = time.monotonic() + timeout
            log.info("master (pid %d) %s stop", self.pid, mode)
            self.notifier.stopping()
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

    def _retire(self, info: WorkerInfo, sig: int = signal.SIGTERM) -> None:
        info.stopping = True
        self._signal_worker(info, sig)

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
