"""A server command as a real process: start it, wait until it serves, signal it, stop it with a
deadline, and leave nothing behind.  One module for the tests, the benchmark and the chaos run.

Why it lives in ``scripts/``: the scripts are what a user runs from a checkout with only the
``bench`` extra installed, so this module needs nothing beyond the standard library and psutil
(a dependency of prefork itself) and nothing from pytest.  ``python scripts/bench.py`` finds it
next to itself; ``tests/helpers.py`` puts ``scripts/`` on ``sys.path`` and builds on it.

The process starts in its own session, so it leads its own process group and the group can be
killed whole.  prefork's workers lead groups of their own, which a kill of the master's group
does not reach: :meth:`Proc.kill` therefore also kills every descendant it ever saw, by pid
(psutil refuses a pid that was reused by another process since).

Waits are deadlines on conditions (:func:`wait_for`), never fixed sleeps; a stop waits on a
pidfd, so the time it measures is not rounded up by a polling interval.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import select
import signal as signals
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import psutil

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
P = TypeVar("P", bound="Proc")

READY_TIMEOUT = 30.0  # seconds from start to serving
STOP_TIMEOUT = 15.0  # seconds from the stop signal to the exit, then the group is killed
REAP_TIMEOUT = 5.0  # seconds to wait for killed processes to go


class NotReady(RuntimeError):
    """The process did not start serving within its deadline."""


class ProcessExited(NotReady):
    """The process ended while it was expected to start serving."""


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.01,
    what: str = "",
    error: type[Exception] = TimeoutError,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; raise ``error``
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise error(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def root_env(
    extra: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """``base`` (default: os.environ) with the repository first on PYTHONPATH, then ``extra``."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra or {})
    return env


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (someone may take it before the caller binds it)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def alive(proc: psutil.Process) -> bool:
    """True while ``proc`` exists and is not a zombie."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Proc:
    """One command run as a process in its own session.

    Output: with ``log`` given, stdout and stderr are appended to that file; without, stderr is
    read line by line in a thread into :attr:`lines` (see :meth:`wait_line`) and stdout is
    discarded.  stdin is /dev/null.

    Use as a context manager, or call :meth:`kill` in a ``finally``: whatever state the process
    is in, the group and every descendant seen are killed and reaped.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path = ROOT,
        log: Path | None = None,
        name: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.name = name or Path(self.argv[0]).name
        self.log = log
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._seen: dict[int, psutil.Process] = {}
        full_env = dict(env) if env is not None else root_env()
        if log is None:
            self.popen: subprocess.Popen[Any] = subprocess.Popen(
                self.argv,
                cwd=cwd,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            threading.Thread(target=self._pump, daemon=True).start()
        else:
            with open(log, "ab") as out:
                self.popen = subprocess.Popen(
                    self.argv,
                    cwd=cwd,
                    env=full_env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                )
        self.started = time.monotonic()
        self._remember(self.pid)

    # -- state ------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has ended (and is reaped), else None."""
        return self.popen.poll()

    def _remember(self, pid: int) -> None:
        with contextlib.suppress(psutil.Error):
            self._seen.setdefault(pid, psutil.Process(pid))

    def children(self) -> list[psutil.Process]:
        """The direct children alive now (a zombie not reaped yet included); remembered for
        :meth:`kill`."""
        try:
            kids = psutil.Process(self.pid).children()
        except psutil.Error:
            return []
        for kid in kids:
            self._seen.setdefault(kid.pid, kid)
        return kids

    def descendants(self) -> list[psutil.Process]:
        try:
            kids = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return []
        for kid in kids:
            self._seen.setdefault(kid.pid, kid)
        return kids

    # -- output -----------------------------------------------------------------------------

    def _pump(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _collect(self, timeout: float) -> bool:
        """Move one line from the reader to :attr:`lines`, waiting up to ``timeout``; False
        once the output has ended."""
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            return True
        if line is None:
            self._queue.put(None)
            return False
        self.lines.append(line)
        return True

    def text(self) -> str:
        """Everything the process wrote so far (its log file, or the stderr lines read)."""
        if self.log is not None:
            return self.log.read_text(errors="replace")
        while self._collect(0.0) and not self._queue.empty():
            pass
        return "\n".join(self.lines)

    def tail(self, lines: int = 5) -> str:
        return " | ".join(self.text().strip().splitlines()[-lines:])

    def wait_line(self, pattern: str, timeout: float = 10.0, start: int = 0) -> re.Match[str]:
        """The first stderr line from index ``start`` on matching ``pattern``, waiting for it
        (AssertionError after ``timeout``, or when the output ends without it)."""
        assert self.log is None, "wait_line reads stderr; this process writes to a log file"
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        index = start
        while True:
            while index < len(self.lines):
                match = regex.search(self.lines[index])
                if match:
                    return match
                index += 1
            remaining = deadline - time.monotonic()
            stream_open = remaining > 0 and self._collect(min(remaining, 0.1))
            if not stream_open and index >= len(self.lines):
                raise AssertionError(
                    f"no line matching {pattern!r} within {timeout} s; got:\n" + self.text()
                )

    # -- lifecycle --------------------------------------------------------------------------

    def wait_ready(self: P, ready: Callable[[], object], timeout: float = READY_TIMEOUT) -> P:
        """Wait until ``ready()`` is true; kill everything and raise ProcessExited if the process
        ends first, or NotReady after ``timeout`` seconds."""
        try:
            wait_for(
                lambda: self.returncode is not None or ready(),
                timeout,
                0.01,
                f"{self.name} to be ready",
            )
        except TimeoutError as exc:
            self.kill()
            raise NotReady(f"{self.name} not ready after {timeout} s: {self.tail()}") from exc
        if self.returncode is not None:
            code = self.returncode
            self.kill()
            raise ProcessExited(f"{self.name} exited with {code} at start: {self.tail()}")
        return self

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process (not its group); nothing once it has been reaped."""
        self.popen.send_signal(sig)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the exit; its status (subprocess.TimeoutExpired after ``timeout``)."""
        return self.popen.wait(timeout)

    def stop(self, sig: int = signals.SIGTERM, timeout: float = STOP_TIMEOUT) -> float:
        """Send ``sig`` and wait for the exit; kill the group after ``timeout``.  Returns the
        seconds from the signal to the exit.  Descendants left behind are killed."""
        self.descendants()
        if self.returncode is not None:
            self.kill()
            return 0.0
        # Wait on a pidfd: Popen.wait(timeout) polls with growing sleeps (0.5 ms doubling to
        # 50 ms), which would round a 20 ms exit up to 31.5 ms.
        pidfd = os.pidfd_open(self.pid)
        try:
            start = time.monotonic()
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)
            exited = bool(select.select([pidfd], [], [], timeout)[0])
            elapsed = time.monotonic() - start
        finally:
            os.close(pidfd)
        if not exited:
            self._kill_group()
        self.kill()
        return elapsed

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signals.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the process group and every descendant ever seen; reap the process."""
        self.descendants()
        self._kill_group()
        others = [proc for pid, proc in self._seen.items() if pid != self.pid]
        for proc in others:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        # A zombie counts as gone: its parent (or an init that may reap late) collects it.
        with contextlib.suppress(TimeoutError):
            wait_for(
                lambda: not any(alive(proc) for proc in others),
                REAP_TIMEOUT,
                what="killed processes to go",
            )
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(REAP_TIMEOUT)

    def __enter__(self: P) -> P:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()
