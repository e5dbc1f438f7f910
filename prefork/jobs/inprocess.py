"""The job table served in the stdlib's modes, with the handler class the pool runs.

:class:`JobTableServer` is a plain ``socketserver.BaseServer`` (``--mode sync``: one job at a
time, in the serving thread); :class:`ThreadingJobServer` adds the stdlib's ``ThreadingMixIn``
(a thread per job) and :class:`ForkingJobServer` its ``ForkingMixIn`` (a child process per
job), each at most ``workers`` jobs at once.  The steps are the pool's (prefork/jobs/server.py):
``get_request()`` claims a job in the serving thread, the handler runs it with
``self.request`` the :class:`~prefork.jobs.backends.Job`, ``shutdown_request()`` finishes it
and ``handle_error()`` schedules a retry, each guarded by the job's owner token (one per claim
here: ``<boot id>/<pid>.<start ns>/<serial>``).

Connections (:class:`Connections`): one per thread and per process, opened where it is used --
the serving thread's claims, each job thread's and each forked child's finish and the
handler's ``self.server.db``.  A sqlite3 connection never crosses a thread or a fork, a
psycopg one never a fork (a child leaves its parent's untouched, not even closed, and ends
with ``os._exit``; a SQLite one is closed before each fork: forking.py).

A job that does not end: in fork mode the parent re-queues the job of a child that died, at
once (prefork/jobs/forking.py).  In the thread and sync modes a job cannot be taken from its
thread; if the whole process dies, its jobs come back when their lease expires (any job server
or pool on the table re-queues them, once).  While jobs run, the serving thread renews their
leases every ``lease / 3`` (sync mode: its one thread is running the job, so a job longer than
``lease`` may be taken back -- set ``lease`` above the longest job) and takes back any expired
lease on the table.

Waking: the server's ``fileno()`` is an epoll set of the table's watcher (inotify on SQLite's
WAL, LISTEN on PostgreSQL: prefork/jobs/watching.py), a bell the server rings itself (after a
claim, when a thread or child ends) and, in fork mode, each child's pidfd; a safety claim
every :data:`SAFETY_POLL` seconds covers what no watcher saw, and scheduled jobs (``run_at``).

Stop: ``shutdown()`` (``prefork jobs --mode ...`` calls it on TERM, INT or QUIT) claims
nothing more; ``server_close()`` waits for the jobs in hand to end (the mix-ins'
``block_on_close``), then re-queues, without counting a crash, any job still held (a handler
that raised SystemExit in sync or thread mode), so no job is left ``running``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import select
import socketserver
import sys
import threading
import time
from typing import Any

from prefork.jobs.backends import Backend, Job
from prefork.jobs.outcomes import backoff, error_text
from prefork.jobs.queue import open_backend
from prefork.jobs.server import boot_id

log = logging.getLogger("prefork.jobs")

SAFETY_POLL = 2.0  # seconds between claims when nothing said the table changed

# The parent's connections as a forked child inherited them: kept referenced (a psycopg
# connection collected in the child would say goodbye on the parent's session), never used.
_INHERITED: list[Backend] = []


class Connections:
    """One backend per thread and per process: ``here()`` is the caller's own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.local = threading.local()

    def here(self) -> Backend:
        local = self.local
        backend: Backend | None = getattr(local, "backend", None)
        if backend is not None and local.pid == os.getpid():
            return backend
        if backend is not None:  # a forked child: the parent's, left alone
            _INHERITED.append(backend)
        backend = local.backend = open_backend(self.url)
        local.pid = os.getpid()
        return backend

    def release(self) -> None:
        """Close the calling thread's connection, if it opened one (in this process)."""
        backend: Backend | None = getattr(self.local, "backend", None)
        if backend is not None and self.local.pid == os.getpid():
            self.local.backend = None
            backend.close()


class Waker:
    """An epoll set the serving loop waits on (its ``fileno()``): the table's watcher, a bell,
    and whatever else is added (pidfds)."""

    def __init__(self, watcher: Any) -> None:
        self.watcher = watcher
        self.epoll = select.epoll()
        self.bell = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.epoll.register(self.bell, select.EPOLLIN)
        fd = watcher.fileno()
        if fd is not None:
            self.epoll.register(fd, select.EPOLLIN)

    def fileno(self) -> int:
        return self.epoll.fileno()

    def ring(self) -> None:
        """From any thread: the loop wakes and tries a claim."""
        with contextlib.suppress(OSError):
            os.eventfd_write(self.bell, 1)

    def settle(self) -> None:
        """Empty the bell and the watcher, so the set is quiet until something new."""
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.bell)
        self.watcher.consume()

    def add(self, fd: int) -> None:
        self.epoll.register(fd, select.EPOLLIN)

    def remove(self, fd: int) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.epoll.unregister(fd)

    def close(self) -> None:
        self.watcher.close()
        self.epoll.close()
        os.close(self.bell)


class JobTableServer(socketserver.BaseServer):
    """Jobs from the table at ``db_url`` in this process: the sync mode, and the base of the
    thread and fork modes.  The tunables are :class:`~prefork.jobs.JobServer`'s (class
    attributes), and ``workers``: jobs at once in the thread and fork modes (0: one per CPU).
    ``self.server.db`` in a handler is the connection of the handler's thread or process."""

    max_attempts: int = 5
    max_crashes: int = 3
    retry_base: float = 1.0
    retry_cap: float = 300.0
    lease: float = 30.0
    queues: tuple[str, ...] = ()
    workers: int = 0

    def __init__(self, db_url: str, RequestHandlerClass: Any, workers: int | None = None,
                 **kwargs: Any) -> None:
        self.db_url = str(db_url)
        open_backend(self.db_url).close()  # the schema, before the first claim
        if workers is not None:
            self.workers = workers
        self.capacity = self.workers or os.cpu_count() or 1
        self.incarnation = f"{boot_id()}/{os.getpid()}.{time.time_ns()}"
        self.connections = Connections(self.db_url)
        self.waker: Waker | None = None
        self.held: dict[int, str] = {}  # job id -> owner token, of the jobs in hand
        self._retried: set[int] = set()  # jobs whose handle_error() wrote a retry
        self._serial = itertools.count(1)
        self._next_poll = 0.0
        self._next_lease = 0.0
        super().__init__(self.db_url, RequestHandlerClass, **kwargs)  # its server_address

    @property
    def db(self) -> Any:
        """The calling thread's (or child's) own connection, for a handler's statements."""
        return self.connections.here().db  # type: ignore[attr-defined]

    def fileno(self) -> int:
        if self.waker is None:
            self.waker = Waker(self.connections.here().watcher())
            self.waker.ring()  # jobs may be waiting
        return self.waker.fileno()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        try:
            super().serve_forever(poll_interval)
        finally:
            if self.waker is not None:  # its watcher may be this thread's connection
                self.waker.close()
                self.waker = None
            self.connections.release()

    # -- the serving thread ---------------------------------------------------------------

    def has_room(self) -> bool:
        return True  # sync: the loop runs one job at a time

    def owners(self) -> list[str]:
        """The owner tokens of the jobs in hand (their leases are renewed)."""
        return list(self.held.values())

    def get_request(self) -> tuple[Job, None]:
        """Claim the next due job; OSError (socketserver's "nothing this time") if none, or if
        ``workers`` jobs already run."""
        waker = self.waker
        assert waker is not None
        waker.settle()
        if not self.has_room():
            raise OSError("no room for another job")  # a thread or child ending rings
        owner = f"{self.incarnation}/{next(self._serial)}"
        job = self.connections.here().claim(owner, 0, self.lease, tuple(self.queues))
        if job is None:
            raise OSError("no job due")
        self.held[job.id] = owner
        waker.ring()  # then the next, at once
        return job, None

    def service_actions(self) -> None:
        super().service_actions()
        now = time.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + SAFETY_POLL
            if self.waker is not None:
                self.waker.ring()
        if now >= self._next_lease:
            self._next_lease = now + self.lease / 3
            backend = self.connections.here()
            backend.renew(self.owners(), self.lease)
            rescued = backend.rescue(self.max_crashes)
            if rescued:
                log.warning("re-queued %d job(s) whose lease expired", rescued)

    # -- where the job runs ---------------------------------------------------------------

    def handle_error(self, request: Any, client_address: Any) -> None:
        """The handler raised: retry after a back-off, or fail the job after max_attempts."""
        assert isinstance(request, Job)
        exc = sys.exc_info()[1]
        owner = self.held.get(request.id, "")
        delay = backoff(request.attempt, self.retry_base, self.retry_cap)
        state = self.connections.here().retry(request, owner, error_text(exc), delay,
                                              self.max_attempts)
        self._retried.add(request.id)
        log.warning("job %d attempt %d failed (%s): %s", request.id, request.attempt,
                    error_text(exc), "no longer ours" if state is None else state,
                    exc_info=True)

    def shutdown_request(self, request: Any) -> None:
        """The handler returned: finish the job if it is still ours.  (After handle_error,
        nothing: the retry is written.  While an exception that stops the thread passes,
        nothing: server_close() puts the job back.)"""
        if not isinstance(request, Job):
            return
        if request.id in self._retried:
            self._retried.discard(request.id)
            self.held.pop(request.id, None)
            return
        if sys.exc_info()[1] is not None:
            return
        owner = self.held.get(request.id, "")
        if not self.connections.here().finish(request, owner):
            log.warning("job %d finished but no longer ours: nothing changed", request.id)
        self.held.pop(request.id, None)

    # -- the end --------------------------------------------------------------------------

    def server_close(self) -> None:
        """Wait for the jobs in hand, then put back any job still held."""
        super().server_close()
        self.wait_for_jobs()
        if self.held:
            backend = self.connections.here()
            for job_id, owner in list(self.held.items()):
                if backend.requeue_held(owner, "stopped before the job finished", False,
                                        self.max_crashes):
                    log.warning("job %d re-queued: the server stopped before it finished",
                                job_id)
                del self.held[job_id]
        self.connections.release()

    def wait_for_jobs(self) -> None:
        """Until every job in hand has ended (sync: none is, once the loop returned)."""


class ThreadingJobServer(socketserver.ThreadingMixIn, JobTableServer):
    """``--mode thread``: each job in a thread of its own (the stdlib's ThreadingMixIn), at
    most ``workers`` at once; each thread opens its own connection and closes it at its end."""

    daemon_threads = False  # server_close() waits for the jobs in hand

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._running = 0
        self._lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def has_room(self) -> bool:
        return self._running < self.capacity

    def wait_for_jobs(self) -> None:
        self._threads.join()  # type: ignore[attr-defined]  # the mix-in's record of them

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._running += 1
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release()
            with self._lock:
                self._running -= 1
            if self.waker is not None:
                self.waker.ring()
