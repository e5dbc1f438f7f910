"""Fakes for the master's parts: a server, a pool that records signals instead of sending them,
and a clock.  Nothing here forks or signals a real process.

Fake pids start above Linux's largest ``pid_max`` (2**22), so even a signal that escaped a fake
would find no process.
"""

from __future__ import annotations

import itertools
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prefork.core.contract import WorkerInfo
from prefork.core.privileges import Credentials
from prefork.core.scoreboard import Slot, State

FAKE_PID_BASE = 5_000_000  # > 4194304, the largest pid_max Linux allows


class FakeSocket:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeListener:
    socket: FakeSocket = field(default_factory=FakeSocket)


class FakeServer:
    """A PoolServer: the settings as attributes, the hooks recorded."""

    def __init__(self, **settings: Any) -> None:
        self.workers = 2
        self.max_children = 8
        self.threads = 1
        self.graceful_timeout = 30.0
        self.quick_timeout = 5.0
        self.max_boot_failures = 3
        self.boot_timeout = 0.0  # off unless a test sets it
        self.request_timeout = 0.0
        self.max_requests = 0
        self.max_requests_jitter = 0
        self.max_age = 0.0
        self.max_memory = 0
        self.max_recycling = 1
        self.min_spare = 0
        self.max_spare = 0
        self.name = "test"
        self.control: str | None = None
        self.metrics: str | None = None
        self.pidfile: str | None = None
        self.upgrade_argv: list[str] | None = None
        self.preload = False
        self.credentials = Credentials()
        for key, value in settings.items():
            if not hasattr(self, key):
                raise AttributeError(key)
            setattr(self, key, value)
        self.listeners = [FakeListener()]
        self.calls: list[tuple[str, Any]] = []
        self.reload_error: Exception | None = None  # prepare_reload raises this when set
        self.reload_settings: dict[str, Any] = {}  # prepare_reload applies these, rollback undoes
        self.rollbacks = 0
        self.kept_socket_file = 0

    def pre_fork(self, worker: WorkerInfo) -> None:
        self.calls.append(("pre_fork", worker.age))

    def master_fds(self) -> dict[int, Any]:
        return {}

    def master_actions(self, now: float) -> float | None:
        return None

    def worker_status(self, worker: WorkerInfo) -> dict[str, Any]:
        return {}

    def post_fork(self, worker: WorkerInfo) -> None:
        self.calls.append(("post_fork", worker.age))

    def load_app(self) -> None:
        self.calls.append(("load_app", 0))

    def worker_exit(self, worker: WorkerInfo, status: int) -> None:
        self.calls.append(("worker_exit", worker.age))

    def prepare_reload(self) -> Callable[[], None]:
        self.calls.append(("prepare_reload", None))
        if self.reload_error is not None:
            raise self.reload_error
        before = {key: getattr(self, key) for key in self.reload_settings}
        for key, value in self.reload_settings.items():
            setattr(self, key, value)

        def rollback() -> None:
            self.rollbacks += 1
            for key, value in before.items():
                setattr(self, key, value)

        return rollback

    def listening_servers(self) -> list[Any]:
        return list(self.listeners)

    def listener_names(self) -> list[str]:
        return ["127.0.0.1:0"]

    def keep_socket_file(self) -> None:
        self.kept_socket_file += 1

    def announce(self) -> None:
        self.calls.append(("announce", None))

    def withdraw(self) -> None:
        self.calls.append(("withdraw", None))

    def metrics_text(self) -> str:
        return ""


_pids = itertools.count(FAKE_PID_BASE)


def worker(
    generation: int = 1, ready: bool = True, stopping: bool = False, age: int | None = None,
    **fields: Any,
) -> WorkerInfo:
    pid = next(_pids)
    return WorkerInfo(age=age if age is not None else pid - FAKE_PID_BASE, slot=0,
                      generation=generation, pid=pid, ready=ready, stopping=stopping, **fields)


class FakePool:
    """The Pool's verbs the parts use, recording the signals as (pid, signal)."""

    def __init__(self, *infos: WorkerInfo) -> None:
        self.workers: dict[int, WorkerInfo] = {}
        self.signals: list[tuple[int, int]] = []
        self.broadcasts: list[int] = []
        for info in infos:
            self.add(info)

    def add(self, info: WorkerInfo) -> WorkerInfo:
        self.workers[info.pid] = info
        return info

    def current(self, generation: int) -> list[WorkerInfo]:
        return [w for w in self.workers.values() if w.generation == generation and not w.stopping]

    def retire(self, info: WorkerInfo, sig: int = signal.SIGTERM) -> None:
        info.stopping = True
        self.signals.append((info.pid, sig))

    def signal_all(self, sig: int) -> None:
        self.broadcasts.append(sig)


def slot(info: WorkerInfo, state: State = State.IDLE, request_started: float = 0.0) -> Slot:
    return Slot(index=info.slot, pid=info.pid, generation=info.generation, state=state,
                requests=0, empty_accepts=0, request_started=request_started,
                last_active=0.0, booted_at=0.0)


class FakeView:
    """A PoolView over plain lists; ``memory`` maps pid to RSS in MB, reads are recorded."""

    def __init__(self, *infos: WorkerInfo, size: int | None = None) -> None:
        self.workers = list(infos)
        self.size = size if size is not None else len(infos)
        self.slots: dict[int, Slot] = {w.pid: slot(w) for w in infos}
        self.memory: dict[int, float] = {}
        self.memory_reads: list[int] = []
        self.stopped_pids: set[int] = set()  # workers frozen by SIGSTOP
        self.is_steady = True

    def live(self) -> list[WorkerInfo]:
        return list(self.workers)

    def current(self) -> list[WorkerInfo]:
        return [w for w in self.workers if not w.stopping]

    def slot(self, info: WorkerInfo) -> Slot:
        return self.slots[info.pid]

    def memory_mb(self, pid: int) -> float | None:
        self.memory_reads.append(pid)
        return self.memory.get(pid)

    def stopped(self, pid: int) -> bool:
        return pid in self.stopped_pids

    def steady(self) -> bool:
        return self.is_steady


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now
