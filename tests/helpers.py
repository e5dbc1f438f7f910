"""Test helpers: deadlines instead of sleeps, and servers run as real processes."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import psutil

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.01, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_tree(procs: Sequence[psutil.Process]) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(list(procs), timeout=5)


LISTEN_RE = re.compile(r"serving \S+ on (\S+) \(")


class ServerProcess:
    """``python -m prefork serve ...`` as a child in its own session.

    Its stderr is collected line by line in a thread; :meth:`wait_line` waits for a pattern.
    :meth:`cleanup` kills the master and every process it left, whatever state the test is in.
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> None:
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [full_env.get("PYTHONPATH")])]
        )
        full_env.update(env or {})
        self.argv = [sys.executable, "-m", "prefork", *args]
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._seen: set[int] = set()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _collect(self, timeout: float) -> bool:
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            return True
        if line is None:
            self._queue.put(None)
            return False
        self.lines.append(line)
        return True

    def wait_line(self, pattern: str, timeout: float = 10.0, start: int = 0) -> re.Match[str]:
        """The first line from index ``start`` on matching ``pattern``, waiting for it."""
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

    def text(self) -> str:
        while self._collect(0.0) and not self._queue.empty():
            pass
        return "\n".join(self.lines)

    def address(self, timeout: float = 15.0) -> str:
        """Where the server listens, as printed on its first line."""
        return self.wait_line(LISTEN_RE.pattern, timeout).group(1)

    def tcp_address(self, timeout: float = 15.0) -> tuple[str, int]:
        where = self.address(timeout).removeprefix("http://").removeprefix("udp://").rstrip("/")
        host, _, port = where.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def workers(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.NoSuchProcess):
            return psutil.Process(self.pid).children()
        return []

    def wait_workers(self, count: int, timeout: float = 10.0) -> list[psutil.Process]:
        """Wait until ``count`` workers have reported ready (per the master's log)."""
        def ready() -> list[psutil.Process] | None:
            kids = [p for p in self.workers() if pid_alive(p.pid)]
            pids = {p.pid for p in kids}
            ready_pids = {
                int(m.group(1)) for line in self.lines
                if (m := re.search(r"worker \d+ \(pid (\d+)\) ready", line))
            }
            self._collect(0.0)
            return kids if len(kids) == count and pids <= ready_pids else None
        return wait_for(ready, timeout, what=f"{count} ready workers")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout)

    def cleanup(self) -> None:
        procs: list[psutil.Process] = []
        with contextlib.suppress(psutil.NoSuchProcess):
            procs = [psutil.Process(self.pid), *psutil.Process(self.pid).children(recursive=True)]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        kill_tree(procs)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


@contextlib.contextmanager
def server_process(*args: str, **kwargs: object) -> Iterator[ServerProcess]:
    server = ServerProcess(*args, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.cleanup()


def http_get(host: str, port: int, path: str = "/", timeout: float = 10.0) -> tuple[int, bytes]:
    """A minimal HTTP/1.0 GET: (status, body)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body
