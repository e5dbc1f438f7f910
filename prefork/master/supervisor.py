"""The master: forks the pool and supervises it.  It never accepts a connection.

The loop is five steps, each owned by a part that keeps its own state and deadline::

    wait      select on the fds below, until the earliest deadline of any part
    dispatch  signals (the table in ``on_signal``)
    reap      the pool collects workers that exited, reading their last reports first;
              then the reports are dispatched, then the exits judged
    check     policies look at the scoreboard and the clock and return actions
    maintain  spawn what is missing, finish or abort a reload, start recycling

It sleeps in one ``select`` and wakes for nothing else -- no poll interval: the signal
self-pipe (signals, and other threads calling ``shutdown()``/``server_close()``), the report
pipe (workers say they are ready or due for recycling), one pidfd per worker (readable when it
exits), the pidfd of a new master during an upgrade, and the control and metrics endpoints with
their clients.  Each fd is registered with a callback as its selector data.

The parts: :class:`~prefork.master.pool.Pool` (workers, fork, reap, signals),
:class:`~prefork.master.generations.Generations` (reloads),
:class:`~prefork.master.recycling.Recycler`, :class:`~prefork.master.boot.BootGuard`,
:class:`~prefork.master.stopping.Stop`, :class:`~prefork.master.upgrade.Upgrade`,
:class:`~prefork.master.outcomes.Outcomes` (what a worker's report or exit means),
:class:`~prefork.master.policies.Policies` (decisions) and
:class:`~prefork.master.enforcing.Enforcer` (their execution),
:class:`~prefork.master.waiters.ReloadWaiters` (control clients waiting for a reload's outcome;
the commands themselves are prefork.master.commands).  The phase of the whole is one
:class:`Phase`.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import threading
import time
from collections import Counter
from typing import Any

from prefork.core import fdlimit
from prefork.core.contract import PoolServer, WorkerInfo
from prefork.core.signals import SignalQueue
from prefork.master import sizing
from prefork.master.boot import BootError, BootGuard
from prefork.master.commands import (
    MASTER_SIGNALS,
    STOP_GRACEFUL,
    STOP_QUICK,
    on_control,
    signal_table,
)
from prefork.master.enforcing import Enforcer
from prefork.master.generations import Generations
from prefork.master.operations import Operations
from prefork.master.outcomes import Outcomes
from prefork.master.policies import Policies
from prefork.master.pool import Pool, ignore_event, preloads
from prefork.master.recycling import Recycler
from prefork.master.spawning import Spawner
from prefork.master.stopping import Stop, StopMode
from prefork.master.tasks import ServerTasks
from prefork.master.templates import become_subreaper
from prefork.master.upgrade import Upgrade, describe_status
from prefork.master.view import Phase, View
from prefork.master.waiters import ReloadWaiters
from prefork.ops import titles
from prefork.ops.logs import reopen_log_files
from prefork.ops.sdnotify import Notifier
from prefork.ops.status import status_report

__all__ = ["BootError", "Master", "Phase", "describe_status"]

log = logging.getLogger("prefork.master")

# Without pidfds (old kernels) child exits are noticed by checking at this interval.
REAP_FALLBACK_INTERVAL = 0.5


class Master:
    """Supervises the pool of one server.  Methods for the caller: run(); request_stop()
    from any thread.  From the loop (the signal table): reload(), scale(size), pause(),
    reopen_logs(), status().  Hooks: see prefork.core.contract.PoolServer."""

    def __init__(self, server: PoolServer, poll_interval: float = 0.5) -> None:
        self.server = server
        self.pid = os.getpid()
        self.thread_ident = threading.get_ident()
        self.size = sizing.configured(server)
        self.phase = Phase.BOOTING
        self.announced = False  # READY was sent (and, after an upgrade, the old master retired)
        self.restarts: Counter[str] = Counter()  # reason -> count, for status and metrics
        # As PID 1, or the subreaper that a template's workers are re-parented to, orphaned
        # descendants of workers become ours too: SIGCHLD wakes the loop to collect them.
        self.reaps_strangers = preloads(server) or self.pid == 1
        strangers = (signal.SIGCHLD,) if self.reaps_strangers else ()
        self.signals = SignalQueue(MASTER_SIGNALS + strangers)
        self.selector = selectors.DefaultSelector()
        self.notifier = Notifier(unset=True)
        self.pool = Pool(server, self.selector, MASTER_SIGNALS, self.signals.fds, poll_interval)
        self.generations = Generations(server, self.pool,
                                       lambda n: self.restarts.update({"reload": n}))
        self.recycler = Recycler(self.pool, lambda reason: self.restarts.update([reason]))
        self.boot = BootGuard(server.max_boot_failures, lambda: self.begin_stop(StopMode.QUICK))
        self.stop = Stop(server, self.pool)
        self.policies = Policies(server)
        self.enforcer = Enforcer(server, self.pool, self.recycler, self.restarts)
        self.waiters = ReloadWaiters()  # control clients waiting for a reload's outcome
        self.spawner = Spawner(self.pool, self.generations, self.boot,
                               lambda: self.phase is Phase.RELOADING, self._abort_reload)
        self.outcomes = Outcomes(self.pool, self.generations, self.recycler, self.boot,
                                 self.restarts, lambda: self.stop.requested, self._abort_reload,
                                 lambda: self.begin_stop(StopMode.GRACEFUL))
        self.upgrade = Upgrade(server, self.selector, MASTER_SIGNALS, self.notifier.address)
        self.view = View(self.pool, self.generations, self.recycler, lambda: self.size,
                         lambda: self.phase)
        self.ops = Operations(server, self.selector, self.status,
                              lambda request: on_control(self, request))
        self.tasks = ServerTasks(server, self.selector)  # master_fds(), master_actions()
        self.on_signal = signal_table(self)

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
        before, after = fdlimit.raise_soft_limit()  # inherited by the workers
        if after != before:
            log.debug("master (pid %d) raised its fd limit from %d to %d", self.pid, before,
                      after)
        self.signals.install()
        if self.pool.templates is not None:  # (preload)
            become_subreaper()
        self.selector.register(self.signals.read_fd, selectors.EVENT_READ, ignore_event)
        self.selector.register(self.pool.report_r, selectors.EVENT_READ, ignore_event)
        try:
            if not self.upgrade.old_master:  # the new master of an upgrade: once it is ready
                self.ops.take_over(replacing=False)
            self.ops.open_metrics()
            log.info("master (pid %d) starting %s", self.pid, titles.counted(self.size, "worker"))
            self._title()
            self._maintain()  # the first workers
            self.tasks.turn(time.monotonic())
            while not self.stop.over(time.monotonic(), len(self.pool.workers)):
                self._turn()
            if self.pool.workers:
                log.warning("master (pid %d) killing %s still running", self.pid,
                            titles.counted(len(self.pool.workers), "worker"))
        finally:
            self._close()
        if self.boot.error is not None:
            raise self.boot.error
        log.info("master (pid %d) stopped", self.pid)

    def scale(self, size: int, resume: bool = True) -> bool:
        """Set the pool size within [1, max_children]; surplus workers drain and exit.  A
        paused pool resumes, unless ``resume`` is False (TTOU).  False when stopping."""
        if self.phase is Phase.STOPPING:
            return False
        if self.phase is Phase.PAUSED and resume:
            self.phase = Phase.SERVING if self.announced else Phase.BOOTING
        size = sizing.within(self.server, size)
        if size != self.size:
            log.info("master (pid %d) pool size %d -> %d", self.pid, self.size, size)
        self.size = size
        self.pool.retire_surplus(self.generations.number, size)
        self._title()
        return True

    def reload(self) -> None:
        """Start a new generation; the old one retires once the new one is ready."""
        if self.phase is Phase.STOPPING:
            self.waiters.refused("the master is stopping")
            return
        if not self.generations.begin():
            if not self.generations.queued:  # refused, not queued behind a running reload
                self.waiters.refused(f"reload failed: {self.generations.refusal}; "
                                     f"generation {self.generations.number} keeps serving")
            return
        self.waiters.began()
        self.phase = Phase.RELOADING
        self.notifier.reloading(f"starting generation {self.generations.number}")
        self.size = sizing.configured(self.server)  # prepare_reload may have changed it
        self._title()

    def pause(self) -> None:
        """Stop all workers (gracefully), keep the master and its sockets.  HUP or TTIN resume."""
        if self.phase is Phase.STOPPING:
            return
        log.info("master (pid %d) stopping all workers; HUP or TTIN to resume", self.pid)
        self.phase = Phase.PAUSED
        self.pool.retire_all()  # every generation, also one mid-reload
        self.generations.cancel()
        if self.pool.templates is not None:  # resuming forks from the newest one only
            self.pool.templates.stop_older_than(self.generations.number)
        self.waiters.cancel("reload cancelled: the workers were stopped (WINCH)")
        self._title()

    def reopen_logs(self) -> None:
        reopen_log_files()
        log.info("master (pid %d) reopened log files", self.pid)
        self.pool.signal_all(signal.SIGUSR1)

    def status(self) -> dict[str, Any]:
        stopping = self.stop.mode.value if self.stop.mode is not None else None
        header = {
            "pid": self.pid, "name": titles.name_of(self.server), "size": self.size,
            "generation": self.generations.number, "phase": self.phase.value,
            "reloading": self.phase is Phase.RELOADING, "paused": self.phase is Phase.PAUSED,
            "stopping": stopping, "restarts": dict(self.restarts),
            **sizing.reported(self.server),
        }
        report = status_report(header, self.pool.board, self.pool.workers.values(),
                               self.pool.retired_requests)
        by_age = {info.age: info for info in self.pool.workers.values()}
        for row in report["workers"]:
            if row["worker"] in by_age:
                row.update(self.server.worker_status(by_age[row["worker"]]))
        return report

    # -- the loop -----------------------------------------------------------------------------

    def _turn(self) -> None:
        for key, mask in self.selector.select(self._timeout()):
            key.data(mask)
        for sig in self.signals.drain():
            handler = self.on_signal.get(sig)
            if handler is not None:
                handler()
        exits = self.pool.reap()  # first: it reads what the dead reported before they died
        for info, event in self.pool.read_reports():
            self._on_report(info, event)
        for info, status in exits:
            self._on_exit(info, status)
        for template, status in self.pool.reap_templates():
            self.spawner.on_template_exit(template, status, self.stop.requested)
        if self.reaps_strangers:
            self.pool.reap_strangers(also_known=self.upgrade.pid)
        self.tasks.turn(time.monotonic())
        self._check(time.monotonic())
        self._maintain()
        self._title()

    def _timeout(self) -> float | None:
        now = time.monotonic()
        deadlines = [self.stop.deadline(), self.policies.deadline(self.view, now)]
        if not self.stop.requested and self._missing() > 0:
            deadlines.append(self.boot.deadline(now))
        deadlines.extend((self.ops.deadline(), self.spawner.deadline(), self.tasks.deadline()))
        if not self.pool.use_pidfd:
            deadlines.append(now + REAP_FALLBACK_INTERVAL)
        known = [d for d in deadlines if d is not None]
        return max(0.0, min(known) - now) if known else None

    def _on_report(self, info: WorkerInfo, event: int) -> None:
        self.outcomes.report(info, event, time.monotonic())

    def _on_exit(self, info: WorkerInfo, status: int) -> None:
        self.outcomes.exit(info, status, time.monotonic())

    def _check(self, now: float) -> None:
        self.ops.expire(now)
        self.spawner.expire(now)
        for action in self.policies.check(self.view, now):
            resize = self.enforcer.apply(action)
            if resize is not None:
                log.info("master (pid %d) %s", self.pid, resize.why)
                self.size = resize.size
                if resize.retire is not None:
                    self.pool.retire(resize.retire)
                self._title()

    def _maintain(self) -> None:
        if self.phase is Phase.STOPPING:
            return
        self.spawner.fill(self._missing())
        if self.phase is Phase.RELOADING and self.generations.ready(self.size):
            queued = self.generations.finish()
            if self.pool.templates is not None:
                self.pool.templates.stop_older_than(self.generations.number)
            self._announce()
            self.waiters.finished(self.status())
            if queued:
                self.reload()
        elif self.phase is Phase.BOOTING and self.pool.workers and self.generations.ready(
            self.size
        ):
            self._announce()
        self.recycler.finish()
        steady = self.phase in (Phase.BOOTING, Phase.SERVING)
        if steady and self.boot.may_spawn(time.monotonic()):
            self.recycler.start(self.spawner.try_spawn, self.generations.number,
                                self.server.max_recycling)

    # -- verbs --------------------------------------------------------------------------------

    def _missing(self) -> int:
        if self.phase is Phase.PAUSED:
            return 0
        # A worker due for recycling still counts until its replacement is ready.
        return self.size - len(self.pool.current(self.generations.number))

    def _abort_reload(self, who: str, why: str) -> None:
        aborted = self.generations.number
        queued = self.generations.abort(who, why)
        self.waiters.failed(f"generation {aborted} failed to boot ({who}: {why}); "
                            f"generation {self.generations.number} keeps serving")
        if self.pool.templates is not None:
            self.pool.templates.stop(aborted)
        self.notifier.ready(f"reload failed; generation {self.generations.number} serving")
        self.phase = Phase.SERVING if self.announced else Phase.BOOTING
        self.size = sizing.configured(self.server)
        self._title()
        if queued:
            self.reload()

    def _announce(self) -> None:
        self.phase = Phase.SERVING
        self.announced = True
        if self.upgrade.old_master:
            # We are the new master of an upgrade: the old one retires now that we serve.
            self.ops.take_over(replacing=True)
            self.notifier.mainpid(self.pid)
            self.upgrade.retire_old_master()
        current = len(self.pool.current(self.generations.number))
        self.notifier.ready(f"{titles.counted(current, 'worker')}, "
                            f"generation {self.generations.number}")

    def begin_stop(self, mode: StopMode, escalate: bool = False, close: bool = False) -> None:
        if mode is StopMode.GRACEFUL:
            self.upgrade.hand_off()
        if self.stop.request(mode, time.monotonic(), escalate, close):
            self.waiters.cancel("the master is stopping; the reload did not finish")
            self.phase = Phase.STOPPING
            self.notifier.stopping()
            if self.pool.templates is not None:
                self.pool.templates.stop_all()

    def _title(self) -> None:
        """The live state: workers of the current generation (not those leaving), or paused;
        set_title skips a call when it did not change, so every turn may call this."""
        state = self.phase.value if self.phase in (Phase.PAUSED, Phase.RELOADING,
                                                   Phase.STOPPING) else ""
        count = len(self.pool.current(self.generations.number))
        titles.set_title(titles.master_title(titles.name_of(self.server), count,
                                             self.server.listener_names(), state))

    def _close(self) -> None:
        if self.pool.templates is not None:
            self.pool.templates.kill_all()
        for info, status in self.pool.kill_all():
            self._on_exit(info, status)
        if not self.stop.requested:  # an unexpected error: _stop() did not say it
            self.notifier.stopping()
        self.waiters.cancel("the master stopped; the reload did not finish")
        self.ops.close(handed_off=self.upgrade.handed_off)
        self.upgrade.close()
        self.tasks.close()
        self.signals.close()
        self.selector.close()
        self.pool.close()
