"""The pool: the master's workers, their scoreboard slots, fork, reports, reaping and signals.

Pidfds are why the master reaps only its own children: it waits on each worker's pid, never
``waitpid(-1)``, so a child the application forked in the master stays the application's to
collect.  Each pidfd sits in the master's selector and wakes the loop when its worker exits;
no SIGCHLD handler is needed, so the loop also works in a non-main thread.

Each worker leads its own process group.  When a worker ends -- on its own, by a crash, or
killed -- its group gets SIGKILL while the worker is still a zombie (so the pid, and the group
id, cannot have been reused yet): subprocesses a handler started do not outlive it.

Fork safety: the master's handled signals are blocked around ``fork()``, so one that arrives
before the child installed its own handlers stays pending for the child (see worker.py); the
child closes every fd of the master's it must not hold -- above all the write end of the
"alive" pipe, whose EOF is how workers notice that the master is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import time
from collections.abc import Callable, Iterable

from prefork.core import forksafe, pidfds
from prefork.core import signals as sigs
from prefork.core.contract import REPORT, REPORT_READY, ChildContext, PoolServer, WorkerInfo, grace
from prefork.core.scoreboard import Scoreboard
from prefork.core.threads import handler_threads
from prefork.core.worker import run_worker
from prefork.master.policies import recycle_deadline
from prefork.master.sizing import slots
from prefork.master.templates import Template, Templates

log = logging.getLogger("prefork.master")

EXIT_UNKNOWN = 255 << 8  # the status of a worker someone else collected


def ignore_event(mask: int) -> None:
    """Selector callback of an fd the loop handles after every wake-up anyway (pidfds: the
    loop reaps; the signal and report pipes: the loop drains them)."""



def preloads(server: PoolServer) -> bool:
    """True when ``server``'s workers are forked by their generation's template (``preload``;
    the one place that reads the setting: the supervisor asks here)."""
    return bool(server.preload)

class Pool:
    """The live workers of every generation, keyed by pid.

    Methods: spawn(generation), read_reports(), reap(), retire(info), signal(info, sig),
    signal_all(sig), kill_group(info), kill_all(), current(generation), close().
    Attributes read by the other parts: ``workers``, ``board``, ``retired_requests``."""

    def __init__(
        self,
        server: PoolServer,
        selector: selectors.BaseSelector,
        handled_signals: Iterable[int],
        private_fds: Callable[[], Iterable[int]],
        poll_interval: float = 0.5,
    ) -> None:
        self.server = server
        self.selector = selector
        self.handled_signals = tuple(handled_signals)
        self.private_fds = private_fds  # the owner's fds a child must close, beyond the selector's
        self.poll_interval = poll_interval
        self.pid = os.getpid()
        self.workers: dict[int, WorkerInfo] = {}
        # Two generations may run side by side during a reload.
        self.board = Scoreboard(slots(server), handler_threads(server))
        self.report_r, self.report_w = os.pipe()
        self.alive_r, self.alive_w = os.pipe()
        os.set_blocking(self.report_r, False)
        self._report_buf = b""
        # Reports read by reap() from workers that exited: read_reports() returns them first.
        self._early_reports: list[tuple[WorkerInfo, int]] = []
        self.ages = 0
        self.retired_requests = 0  # requests served by workers already reaped
        self.use_pidfd = pidfds.usable()
        # With preload, workers are forked by their generation's template (prefork.core.template).
        self.templates: Templates | None = None
        if preloads(server):
            self.templates = Templates(server, selector, self.handled_signals, self.child_context)

    # -- views --------------------------------------------------------------------------------

    def current(self, generation: int) -> list[WorkerInfo]:
        """Workers of ``generation`` that are not on their way out."""
        return [w for w in self.workers.values() if w.generation == generation and not w.stopping]

    def booting(self) -> int:
        return sum(1 for w in self.workers.values() if not w.ready)

    def requests_served(self, info: WorkerInfo) -> int:
        return self.board.read(info.slot).requests

    # -- fork ---------------------------------------------------------------------------------

    def spawn(self, generation: int) -> WorkerInfo:
        """Fork one worker of ``generation``.  Raises what ``pre_fork`` or ``fork()`` raise."""
        self.ages += 1
        used = {w.slot for w in self.workers.values()}
        slot = next(i for i in range(self.board.slots) if i not in used)
        info = WorkerInfo(age=self.ages, slot=slot, generation=generation)
        self.server.pre_fork(info)
        self.board.reset(info.slot, 0, info.generation, time.monotonic())
        try:
            if self.templates is not None:
                pid = self.templates.fork_worker(info)
            else:
                pid = self._fork(info)
        except BaseException:
            self.board.clear(info.slot)
            raise
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # also done in the child; whichever runs first wins
        info.pid, info.started = pid, time.monotonic()
        info.recycle_at = recycle_deadline(self.server, info.started)
        if self.use_pidfd:
            info.pidfd = os.pidfd_open(pid)
            self.selector.register(info.pidfd, selectors.EVENT_READ, ignore_event)
        self.workers[pid] = info
        log.debug("master (pid %d) spawned worker %d (pid %d)", self.pid, info.age, pid)
        return info

    def _fork(self, info: WorkerInfo) -> int:
        ctx = self.child_context()
        ctx.blocked_mask = sigs.block(self.handled_signals)
        try:
            pid = forksafe.fork(log, "master")
            if pid == 0:
                run_worker(self.server, info, ctx)  # never returns
        finally:
            sigs.unblock(ctx.blocked_mask)
        return pid

    def child_context(self) -> ChildContext:
        """What a new child (worker or template) gets besides the server."""
        return ChildContext(
            master_pid=self.pid,
            report_fd=self.report_w,
            alive_fd=self.alive_r,
            board=self.board,
            blocked_mask=set(),
            poll_interval=self.poll_interval,
            credentials=self.server.credentials,
            close_fds=self._child_close_fds(),
        )

    def _child_close_fds(self) -> list[int]:
        """Every fd of the master's that a worker must not hold: whatever the master's loop
        waits on (pidfds, report pipe, control and metrics sockets and their clients, ...), the
        selector itself, the alive pipe's write end and the owner's private fds."""
        fds = {self.alive_w, self.report_r, *self.private_fds()}
        if self.templates is not None:
            fds.update(self.templates.fds())
        fds.update(key.fd for key in self.selector.get_map().values())
        with contextlib.suppress(NotImplementedError, ValueError, AttributeError):
            selector_fd = self.selector.fileno()  # type: ignore[attr-defined]
            if selector_fd >= 0:
                fds.add(selector_fd)
        return sorted(fds)

    # -- reports and exits --------------------------------------------------------------------

    def read_reports(self) -> list[tuple[WorkerInfo, int]]:
        """The (worker, event) reports waiting in the pipe, of workers still in the pool (a
        worker that reports ready is marked so here), after those reap() read early."""
        out, self._early_reports = self._early_reports, []
        out.extend(self._drain_reports())
        return out

    def _drain_reports(self) -> list[tuple[WorkerInfo, int]]:
        chunks = [self._report_buf]
        while True:
            try:
                data = os.read(self.report_r, 64 * REPORT.size)
            except BlockingIOError:
                break
            chunks.append(data)
            if len(data) < 64 * REPORT.size:
                break
        buf = b"".join(chunks)
        usable = len(buf) - len(buf) % REPORT.size
        self._report_buf = buf[usable:]
        out = []
        for pid, event in REPORT.iter_unpack(buf[:usable]):
            info = self.workers.get(pid)
            if info is None:
                continue
            if event == REPORT_READY:
                info.ready, info.ready_at = True, time.monotonic()
                log.info("worker %d (pid %d) ready in %.1f ms", info.age, info.pid,
                         (time.monotonic() - info.started) * 1000)
            out.append((info, event))
        return out

    def reap(self) -> list[tuple[WorkerInfo, int]]:
        """Collect the workers that exited: (worker, waitpid status), each already out of the
        pool, its group killed and the ``worker_exit`` hook called.

        A worker writes its reports before it exits, so once an exit is seen, everything it
        reported is in the pipe: it is read first (kept for read_reports()), so that a worker
        that reported ready and then died at once is judged ready -- a crash, not a boot
        failure -- however the two events fell across the loop's turns."""
        exited = []
        for pid, info in list(self.workers.items()):
            try:
                found = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:  # collected by someone else: status unknown
                exited.append((info, False))
                continue
            if found is not None:
                exited.append((info, True))
        if not exited:
            return []
        self._early_reports.extend(self._drain_reports())
        out = []
        for info, zombie in exited:
            if not zombie:  # the pid may be reused: no group to kill
                out.append((info, self._forget(info, EXIT_UNKNOWN)))
                continue
            # Still a zombie: take down whatever the handler left in the group, then collect.
            self.kill_group(info)
            _, status = os.waitpid(info.pid, 0)
            out.append((info, self._forget(info, status)))
        return out

    def _forget(self, info: WorkerInfo, status: int) -> int:
        del self.workers[info.pid]
        if info.pidfd is not None:
            self.selector.unregister(info.pidfd)
            os.close(info.pidfd)
            info.pidfd = None
        try:
            self.server.worker_exit(info, os.waitstatus_to_exitcode(status))
        except Exception:
            log.exception("worker_exit hook failed for worker %d (pid %d)", info.age, info.pid)
        last = self.board.read(info.slot)
        self.retired_requests += last.requests
        info.died_busy = last.request_started > 0.0
        self.board.clear(info.slot)
        return status

    def reap_templates(self) -> list[tuple[Template, int]]:
        return self.templates.reap() if self.templates is not None else []

    def reap_strangers(self, also_known: int = 0) -> int:
        """As PID 1 or a subreaper: collect exited children that belong to no part (orphaned
        descendants of workers).  Stops at a child a part collects itself (a worker, a
        template, ``also_known``), which the next turn handles.  Returns how many."""
        count = 0
        while True:
            try:
                found = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return count
            if found is None or found.si_pid == also_known or found.si_pid in self.workers or (
                self.templates is not None and self.templates.owns(found.si_pid)
            ):
                return count
            with contextlib.suppress(ChildProcessError):
                os.waitpid(found.si_pid, os.WNOHANG)
            count += 1

    # -- signals ------------------------------------------------------------------------------

    def retire(self, info: WorkerInfo, sig: int = signal.SIGTERM) -> None:
        """Ask a worker to leave (TERM: after its request in flight); its exit is no crash.  One
        still there graceful_timeout later is killed (the policies' check): a reload, a
        recycle, a scale-down or a pause must end even if a client keeps the old worker busy
        (a stream, a pipeline).  (The pool's stop signals its workers itself, with its own
        deadline.)"""
        info.stopping = True
        if grace(self.server) and not info.retire_by:
            info.retire_by = time.monotonic() + grace(self.server)
        self.signal(info, sig)

    def retire_surplus(self, generation: int, size: int) -> None:
        """Retire workers of ``generation`` beyond ``size``, the youngest first: the oldest are
        warm."""
        current = self.current(generation)
        surplus = max(0, len(current) - size)
        for info in sorted(current, key=lambda w: w.age, reverse=True)[:surplus]:
            self.retire(info)

    def retire_all(self) -> None:
        for info in list(self.workers.values()):
            if not info.stopping:
                self.retire(info)

    def signal(self, info: WorkerInfo, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(info.pid, sig)

    def dump_then_kill(self, info: WorkerInfo, kill_at: float) -> None:
        """A hung worker: its stack now (faulthandler, answered even by a busy worker), then
        SIGKILL at ``kill_at``; it is replaced at once, not counted as a crash."""
        self.signal(info, signal.SIGUSR2)
        info.kill_at = kill_at
        info.stopping = True

    def signal_all(self, sig: int) -> None:
        for info in self.workers.values():
            self.signal(info, sig)

    def kill_group(self, info: WorkerInfo) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(info.pid, signal.SIGKILL)

    def kill_all(self) -> list[tuple[WorkerInfo, int]]:
        """Last resort, also on an unexpected error in the loop: no worker outlives the master."""
        for info in self.workers.values():
            self.kill_group(info)
        out = []
        for info in list(self.workers.values()):
            try:
                _, status = os.waitpid(info.pid, 0)
            except ChildProcessError:
                status = signal.SIGKILL
            out.append((info, self._forget(info, status)))
        return out

    def close(self) -> None:
        self.board.close()
        for fd in (self.report_r, self.report_w, self.alive_r, self.alive_w):
            os.close(fd)
