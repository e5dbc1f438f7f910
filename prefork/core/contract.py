"""What the server, the master and the worker agree on, and nothing else.

The master and the worker need a few things from the server they run -- its tunables, its
hooks, its listening sockets -- but not the concrete mix-in: :class:`PoolServer` names exactly
that, so ``prefork.master`` and ``prefork.core.worker`` import this module and never
``prefork.core.servers`` (which imports the master to run it: no cycle, not even for typing).

:class:`WorkerInfo` is the master's record of one worker, also handed to the hooks;
:class:`ChildContext` is what the master hands a new child besides the server; the report
records are what a worker tells the master through the report pipe.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prefork.core.privileges import Credentials
from prefork.core.scoreboard import Scoreboard

# Reports from a worker to the master: fixed-size records, written in one ``write`` each (well
# under PIPE_BUF, so records from different workers never interleave).
REPORT = struct.Struct("=iI")  # pid, event
REPORT_READY = 1
REPORT_RECYCLE = 2  # served max_requests: the master starts a replacement, then retires it
REPORT_OVER_MEMORY = 3  # a request ran out of the memory budget (core/memguard.py): the same
# Why the master recycles a worker that reports an event.
RECYCLE_REPORTS = {REPORT_RECYCLE: "max_requests", REPORT_OVER_MEMORY: "max_memory"}
REPORT_SHUTDOWN = 4  # a handler called server.shutdown(): the master stops the pool gracefully


class ReloadRefused(Exception):
    """``prepare_reload()`` raises it to refuse a reload for a reason one line says (a bad
    config); the log shows that line, not a traceback.  Any other exception is logged with
    its traceback (a hook that failed)."""


@dataclass
class WorkerInfo:
    """One worker as the master sees it; passed to the ``pre_fork``/``post_fork``/``worker_exit``
    hooks.  ``age`` counts spawns from 1 and is never reused; ``slot`` is the worker's place in
    the scoreboard, reused by its replacement.  The fields after ``stopping`` are the master's
    bookkeeping."""

    age: int
    slot: int
    generation: int = 1
    pid: int = 0
    started: float = 0.0  # time.monotonic() of the fork
    ready: bool = False  # reported ready; before that an exit is a boot failure
    ready_at: float = 0.0  # time.monotonic() of the ready report
    died_busy: bool = False  # at its exit a request was in flight (per the scoreboard)
    stopping: bool = False  # asked to leave (retired, hung, stopping): its exit is no crash
    pidfd: int | None = None
    kill_at: float = 0.0  # monotonic time of a pending SIGKILL (after a stack dump); inf: sent
    recycle_at: float = 0.0  # monotonic time max_age is reached
    retire_by: float = 0.0  # monotonic time a retired worker still there is killed


@dataclass
class ChildContext:
    """What the master hands a new child besides the server."""

    master_pid: int
    report_fd: int
    alive_fd: int
    board: Scoreboard
    blocked_mask: set[int]
    credentials: Credentials = field(default_factory=Credentials)  # who the worker becomes
    poll_interval: float = 0.5  # how often service_actions() runs, when the server has one
    app_loaded: bool = False  # forked from a template that already ran server.load_app()
    via_template: bool = False  # the master becomes our parent only once the intermediate is gone
    close_fds: list[int] = field(default_factory=list)


class PoolServer:
    """The server as the master and its workers know it: the tunables, declared here once with
    their defaults, and the hooks.  ``PreforkMixIn`` is one; the master and the worker import
    this, never the mix-in.

    Tunables are class attributes with the settings' names (docs/settings.md, generated from
    prefork/command/settings.py, which reads these defaults), besides ``quick_timeout`` (seconds
    a quick stop waits before KILL) and ``max_boot_failures`` (boot failures in a row before
    serve_forever() raises BootError).  The hooks run in the master (``pre_fork``,
    ``worker_exit``, ``prepare_reload``), in each new worker (``load_app`` unless preloaded,
    ``post_fork``) or in a preload template (``load_app``)."""

    workers: int = 0  # 0: one per usable CPU (default_workers())
    max_children: int = 64
    graceful_timeout: float = 30.0
    quick_timeout: float = 2.0
    max_boot_failures: int = 5
    boot_timeout: float = 60.0  # seconds a new worker or template may take to report ready
    request_timeout: float = 0.0
    max_requests: int = 0
    max_requests_jitter: int = 0
    max_age: float = 0.0
    max_memory: int = 0  # MB
    max_recycling: int = 1
    min_spare: int = 0
    max_spare: int = 0
    cpu_affinity: bool = False  # pin each worker to one CPU, round robin (core/affinity.py)
    name: str = ""
    control: str | None = None
    metrics: str | None = None
    pidfile: str | None = None
    user: str | None = None  # workers run as this user (a name or a uid) ...
    group: str | None = None  # ... and group; the master keeps its own (core/privileges.py)
    preload: bool = False  # load_app() once per generation, in a template the workers fork from
    socket_mode: int | None = None  # mode of a unix listener's socket file (None: the umask)
    # The command that starts this server again with inherited sockets (USR2); None: no USR2.
    upgrade_argv: list[str] | None = None
    upgrade_cwd: str | None = None  # where it runs (a --chdir moved this master; None: here)
    # The worker's multiplexer (core/mux.py): how long a new connection may take to send its
    # first bytes or request head (TLS handshake included), how long a keep-alive connection
    # may stay idle, and how many connections may wait in one worker.
    client_timeout: float = 5.0
    keep_alive: float = 5.0
    # The rest of a response the client did not take at once, sent by the multiplexer after the
    # handler (core/outbox.py): this long in all, then the connection is closed.
    send_timeout: float = 60.0
    worker_connections: int = 0  # 0: sized from the fd limit (core/fdlimit.py)
    threads: int = 1  # handler threads per worker (core/threads.py); 1: the worker's loop serves
    # Who parses the WSGI handler's request heads (apps/fasthead.py): "auto" (httptools when
    # it is installed, with the strict parser for the rest), "httptools", or "python" alone.
    http_parser: str = "auto"
    # Bounds on a request head, as gunicorn's (core/httplimits.py: 0 is unlimited, or most;
    # None: the handler's own, 8190/100/8190 for the WSGI handler, the stdlib's for http.server).
    limit_request_line: int | None = None
    limit_request_fields: int | None = None
    limit_request_field_size: int | None = None
    # Whose proxy headers (X-Forwarded-*, Forwarded) are believed (apps/forwarded.py).
    forwarded_allow_ips: str = "127.0.0.1,::1"
    root_path: str | None = None  # the WSGI app's mount prefix, its SCRIPT_NAME (apps/wsgi.py)
    # Each connection begins with a PROXY protocol header, from these peers only (proxyproto.py).
    proxy_protocol: bool = False
    proxy_allow_ips: str = "127.0.0.1,::1"
    credentials: Credentials = Credentials()  # resolved from user and group by the server

    def pre_fork(self, worker: WorkerInfo) -> None:
        """Called in the master before each worker is forked."""

    def load_app(self) -> None:
        """Called where application code may run, before any request: in each new worker, or
        -- with ``preload`` -- once per generation in the template its workers are forked from
        (never in the master).  The default does nothing: a handler class given to the
        constructor is already imported.  ``prefork serve`` imports the APP here."""

    def post_fork(self, worker: WorkerInfo) -> None:
        """Called in a new worker before it reports ready (an exception is a boot failure)."""

    def worker_exit(self, worker: WorkerInfo, status: int) -> None:
        """Called in the master after a worker exited and was reaped (status as
        ``os.waitstatus_to_exitcode``)."""

    def prepare_reload(self) -> Callable[[], None]:
        """Called in the master on a reload (HUP), before the new generation is forked: change
        what the new workers should get (the default changes nothing).  Raise ReloadRefused
        (one line) or anything else to refuse the reload; return a function that undoes the
        change, called if the new generation fails to boot."""
        return _nothing

    def announce(self) -> None:
        """Called in the master when it starts to answer for its listeners to the outside world
        -- where it claims the pid file and the control socket: at its start, or, as the new
        master of an upgrade (USR2), once its pool is ready and the old master retires.  Publish
        the listeners here (prefork.rpc registers its programs with rpcbind).  An exception is
        logged; the master serves on."""

    def withdraw(self) -> None:
        """Called in the master as it exits, after announce(), unless it handed its listeners
        to a new master (USR2: the new one answers for them now): undo what announce()
        published."""

    def metrics_text(self) -> str:
        """Prometheus text of the server's own metric families, appended to ``/metrics`` by the
        master: read what the workers share (memory mapped before the fork), never ask a
        worker.  The default has none."""
        return ""

    def worker_status(self, worker: WorkerInfo) -> dict[str, Any]:
        """Called in the master for ``prefork status``: fields added to ``worker``'s row (read
        what the workers share, never ask a worker; the job pool gives the job it runs)."""
        return {}

    def busy_title(self) -> str:
        """Called in a worker whose server ``pulls_requests()`` when its title shows a request
        in hand: the words in place of ``busy`` (the job pool: the job it runs), shown as each
        request begins; ``idle`` once a ``get_request()`` found nothing (core/pulling.py)."""
        return "busy"

    def listening_servers(self) -> list[Any]:
        """The socketserver servers whose sockets the workers serve."""
        return []

    def listener_names(self) -> list[str]:
        """Every listener's address as a user would type it, for titles and logs."""
        return []

    def pulls_requests(self) -> bool:
        """True for a server without a listening socket (socketserver's ``BaseServer`` whose
        ``get_request()`` returns anything, e.g. a table entry): each worker then calls its
        ``get_request()`` in its own loop (core/pulling.py)."""
        return False

    def master_fds(self) -> dict[int, Callable[[], None]]:
        """fds the master's loop also waits on for this server, each with the function to call
        when it is readable (asked every turn: the set may change).  Runs in the master: only
        prefork's own code (the job pool's watcher of its table), never application code."""
        return {}

    def master_actions(self, now: float) -> float | None:
        """Called in the master at every turn of its loop, after the reaps (so after every
        ``worker_exit`` of the turn); returns the ``time.monotonic()`` time by which it wants
        to be called again, or None.  Keep it cheap: it runs at every wake-up."""
        return None

    def keep_socket_file(self) -> None:
        """Leave the unix socket files in place at close: another master serves them now (and
        withdraw() will not be called)."""


def grace(server: PoolServer) -> float:
    """Seconds a worker asked to leave -- retired, or in a graceful stop -- may go on serving
    before it is killed (0: no limit for a retired one); a worker's keep-alive drain stays
    within half of it.  The one place that reads ``graceful_timeout``, at each use, so a reload
    that changes it applies at once: the master's pool, stopping and enforcer ask it, and the
    worker for its drain."""
    return server.graceful_timeout


def _nothing() -> None:
    pass
