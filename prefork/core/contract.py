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
from typing import Any, Protocol

from prefork.core.privileges import Credentials
from prefork.core.scoreboard import Scoreboard

# Reports from a worker to the master: fixed-size records, written in one ``write`` each (well
# under PIPE_BUF, so records from different workers never interleave).
REPORT = struct.Struct("=iI")  # pid, event
REPORT_READY = 1
REPORT_RECYCLE = 2  # served max_requests: the master starts a replacement, then retires it


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
    stopping: bool = False  # asked to leave (retired, hung, stopping): its exit is no crash
    pidfd: int | None = None
    kill_at: float = 0.0  # monotonic time of a pending SIGKILL (after a stack dump); inf: sent
    recycle_at: float = 0.0  # monotonic time max_age is reached


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


class PoolServer(Protocol):
    """The server as the master and its workers use it (``PreforkMixIn`` is one).

    Tunables are attributes with the settings' names (docs/settings.md); the hooks are called
    in the master (``pre_fork``, ``worker_exit``, ``prepare_reload``) or in the new worker
    (``post_fork``)."""

    workers: int
    max_children: int
    graceful_timeout: float
    quick_timeout: float
    max_boot_failures: int
    request_timeout: float
    max_requests: int
    max_requests_jitter: int
    max_age: float
    max_memory: int
    max_recycling: int
    min_spare: int
    max_spare: int
    cpu_affinity: bool  # pin each worker to one CPU (prefork.core.affinity)
    name: str
    control: str | None
    metrics: str | None
    pidfile: str | None
    upgrade_argv: list[str] | None
    client_timeout: float
    keep_alive: float
    worker_connections: int
    threads: int  # handler threads per worker; 1: none, the worker's loop serves
    credentials: Credentials  # who the workers run as (resolved from user and group)
    preload: bool  # load the application once per generation, in a template process

    def pre_fork(self, worker: WorkerInfo) -> None: ...

    def load_app(self) -> None: ...

    def post_fork(self, worker: WorkerInfo) -> None: ...

    def worker_exit(self, worker: WorkerInfo, status: int) -> None: ...

    def prepare_reload(self) -> Callable[[], None]: ...

    def listening_servers(self) -> list[Any]: ...

    def listener_names(self) -> list[str]: ...

    def keep_socket_file(self) -> None: ...
