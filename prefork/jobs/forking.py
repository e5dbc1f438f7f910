"""``--mode fork`` for the job table: the stdlib's ``ForkingMixIn`` over
:class:`~prefork.jobs.inprocess.JobTableServer`, a child process per job.

The parent claims (as the serving thread does in every mode), forks, and the child opens its
own connection, runs the handler and finishes the job; the parent reaps each child by its pid
(a pidfd in the server's epoll set wakes the loop; never ``waitpid(-1)``) and re-queues, at
once, the job of a child that died, the reason on the row (``child killed by SIGKILL``,
counted against ``max_crashes``).  While children run, the parent looks once a second for
their jobs that were cancelled or ran past their timeout and kills those children.

No SQLite connection crosses a fork: the parent closes its own before each fork (one left open,
even untouched by the child, shares its file state -- locks, the WAL -- with the child's own
connection inside SQLite's memory: the child's finish was lost when the parent later closed
its connection).  A psycopg connection is left open: the child never uses it, keeps it
referenced (prefork/jobs/inprocess.py) and ends with ``os._exit``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socketserver
import time
from typing import Any

from prefork.jobs.inprocess import JobTableServer
from prefork.jobs.outcomes import exit_reason

log = logging.getLogger("prefork.jobs")

STOP_CHECK = 1.0  # seconds between looks for cancelled or overdue jobs, while children run
EXIT_UNFINISHED = 3  # a child whose finish failed: its parent re-queues the job


class ForkingJobServer(socketserver.ForkingMixIn, JobTableServer):
    """``--mode fork``: each job in a child process (the stdlib's ForkingMixIn), at most
    ``workers`` at once.  The parent claims, the child opens its own connection, runs the
    job and finishes it; the parent reaps each child by its pid and re-queues the job of one
    that died."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.parent = os.getpid()
        # pid -> (job id, owner token, pidfd or -1), the children running jobs.
        self.children: dict[int, tuple[int, str, int]] = {}
        self.kills: dict[int, str] = {}  # pid -> why the parent killed it
        self._next_stop_check = 0.0
        super().__init__(*args, **kwargs)

    def has_room(self) -> bool:
        return len(self.children) < self.capacity

    def process_request(self, request: Any, client_address: Any) -> None:
        if self.connections.here().dialect == "sqlite":
            # No SQLite connection across a fork, not even one the child leaves alone: the
            # child's own would share its file state (locks, the WAL) in SQLite's memory.
            self.connections.release()
        before = set(self.active_children or ())
        super().process_request(request, client_address)  # a child never returns from it
        (pid,) = set(self.active_children or ()) - before
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # refused here: the loop's poll_interval reaps it
            pidfd = -1
        self.children[pid] = (request.id, self.held.pop(request.id, ""), pidfd)
        if pidfd >= 0 and self.waker is not None:
            self.waker.add(pidfd)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if os.getpid() != self.parent:
            # In the child: the parent's stop signals are not ours (a Ctrl-C to the terminal
            # lets the job finish, as the parent's stop waits for it; TERM ends the child,
            # and the parent re-queues its job); the parent's pipes are not ours to write.
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            for sig in (signal.SIGTERM, signal.SIGQUIT):
                signal.signal(sig, signal.SIG_DFL)
        super().finish_request(request, client_address)

    def owners(self) -> list[str]:
        return [*self.held.values(), *(owner for _, owner, _ in self.children.values())]

    def wait_for_jobs(self) -> None:
        self.collect_children(blocking=True)

    def shutdown_request(self, request: Any) -> None:
        if os.getpid() == self.parent:
            return super().shutdown_request(request)
        try:
            super().shutdown_request(request)
        except Exception:
            log.exception("job %s: the finish failed; the parent re-queues it",
                          getattr(request, "id", "?"))
            os._exit(EXIT_UNFINISHED)

    def collect_children(self, *, blocking: bool = False) -> None:
        """Reap each child by its pid (never ``waitpid(-1)``, the mix-in's way past its own
        bound, which therefore never applies: ``workers`` bounds the children); re-queue the
        job of one that died."""
        for pid in list(self.children):
            try:
                done, status = os.waitpid(pid, 0 if blocking else os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                self._reaped(pid, os.waitstatus_to_exitcode(status))

    def _reaped(self, pid: int, code: int) -> None:
        job_id, owner, pidfd = self.children.pop(pid)
        if self.active_children is not None:
            self.active_children.discard(pid)
        if pidfd >= 0:
            if self.waker is not None:
                self.waker.remove(pidfd)
            os.close(pidfd)
        why = self.kills.pop(pid, None)
        if code != 0:
            reason = exit_reason(code, "child")
            reason = f"{why}: {reason}" if why else reason
            count = self.connections.here().requeue_held(owner, reason, True, self.max_crashes)
            if count:
                log.warning("job %d re-queued: %s (pid %d)", job_id, reason, pid)
        if self.waker is not None:
            self.waker.ring()  # room for another job

    def service_actions(self) -> None:
        super().service_actions()
        now = time.monotonic()
        if self.children and now >= self._next_stop_check:
            self._next_stop_check = now + STOP_CHECK
            self._stop_overdue()

    def _stop_overdue(self) -> None:
        """Kill the child of a job cancelled or past its timeout (the reap writes why)."""
        by_owner = {owner: pid for pid, (_, owner, _) in self.children.items()}
        for job_id, owner, cancelled in self.connections.here().to_stop(self.incarnation):
            pid = by_owner.get(owner)
            if pid is None or pid in self.kills:
                continue
            self.kills[pid] = "cancelled" if cancelled else "job timeout"
            log.warning("job %d %s: killing its child (pid %d)", job_id, self.kills[pid], pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

