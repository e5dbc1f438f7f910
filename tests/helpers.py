"""Test helpers: deadlines instead of sleeps, servers run as real processes, forked children.

Starting, signalling, stopping and cleaning up a process is ``scripts/procs.py``, shared with
the benchmark and the chaos run; this module adds what only the tests need on top of it: the
``python -m prefork serve`` command line, reading the master's log (where it listens, which
workers are ready, generations) and failing with AssertionError.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import signal
import socket
import sys
import textwrap
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))

import procs  # noqa: E402  (scripts/procs.py, put on sys.path just above)

T = TypeVar("T")
LOCAL = "127.0.0.1:0"  # bind spec: loopback, a free port
CHILD_TIMEOUT = 30.0  # seconds a forked child may run


def wait_for(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.01, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    return procs.wait_for(predicate, timeout, interval, what, error=AssertionError)


Proc = procs.Proc
free_port = procs.free_port


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        return procs.alive(psutil.Process(pid))
    except psutil.Error:
        return False


def wait_gone(pids: set[int], what: str, timeout: float = 10.0) -> None:
    """Wait until none of ``pids`` is alive (a zombie counts as gone)."""
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout, what=what)


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without anything that would configure prefork behind the test's back, with
    the repository first on PYTHONPATH, then ``extra``."""
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("PREFORK_", "LISTEN_"))
        and key not in ("WEB_CONCURRENCY", "NOTIFY_SOCKET")
    }
    return procs.root_env(extra, base=env)


LISTEN_RE = re.compile(r"serving \S+ on (\S+) \(")
READY_RE = re.compile(r"worker \d+ \(pid (\d+)\) ready")


class ServerProcess(procs.Proc):
    """``python -m prefork serve ...`` as a child in its own session (see scripts/procs.py).

    ``env`` is added to a clean environment (:func:`clean_env`); ``launcher`` goes before the
    interpreter (e.g. ``systemd-socket-activate -l ...``).  Its stderr is collected line by line;
    :meth:`wait_line` waits for a pattern.  :meth:`cleanup` kills the master and every process
    it left, whatever state the test is in.
    """

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
        launcher: Sequence[str] = (),
    ) -> None:
        argv = [*launcher, sys.executable, "-m", "prefork", *args]
        super().__init__(argv, env=clean_env(**(env or {})), cwd=cwd, name="prefork")

    def cleanup(self) -> None:
        self.kill()

    # -- what the log says ------------------------------------------------------------------

    def address(self, timeout: float = 15.0) -> str:
        """Where the server listens, as printed on its first line."""
        return self.wait_line(LISTEN_RE.pattern, timeout).group(1)

    def tcp_address(self, timeout: float = 15.0) -> tuple[str, int]:
        where = self.address(timeout)
        for scheme in ("http://", "https://", "udp://"):
            where = where.removeprefix(scheme)
        where = where.rstrip("/")
        host, _, port = where.rpartition(":")
        return host.strip("[]"), int(port)

    def mark(self) -> int:
        """Index of the next stderr line: a start for wait_line that skips what was seen."""
        self.text()  # collect what is queued, so older lines do not land after the mark
        return len(self.lines)

    def ready_pids(self, start: int = 0) -> set[int]:
        """Pids of the workers logged ready from line ``start`` on."""
        self.text()
        return {int(m.group(1)) for line in self.lines[start:] if (m := READY_RE.search(line))}

    # -- the pool ---------------------------------------------------------------------------

    def workers(self) -> list[psutil.Process]:
        """The master's children but its preload templates and --reload watcher."""
        return [p for p in self.children() if not _is_template(p)]

    def templates(self) -> list[psutil.Process]:
        return [p for p in self.children() if _is_template(p)]

    def live(self) -> set[int]:
        """Pids of the master's workers that are alive (not zombies)."""
        return {p.pid for p in self.workers() if procs.alive(p)}

    def wait_workers(self, count: int, timeout: float = 10.0) -> list[psutil.Process]:
        """Wait until ``count`` workers have reported ready (per the master's log)."""
        def ready() -> list[psutil.Process] | None:
            kids = [p for p in self.workers() if procs.alive(p)]
            pids = {p.pid for p in kids}
            return kids if len(kids) == count and pids <= self.ready_pids() else None
        return wait_for(ready, timeout, what=f"{count} ready workers")

    def ready_workers(self, count: int, timeout: float = 10.0) -> set[int]:
        """Like :meth:`wait_workers`, as pids; a worker that exits while it is being looked at
        (a drained or retired one) is simply not counted."""
        def ready() -> set[int] | None:
            live = self.live()
            return live if len(live) == count and live <= self.ready_pids() else None
        return wait_for(ready, timeout, what=f"{count} ready workers")

    def reload(self, generation: int, timeout: float = 15.0) -> int:
        """HUP; wait until ``generation`` is ready.  Returns the mark taken before the HUP."""
        start = self.mark()
        self.signal(signal.SIGHUP)
        self.wait_line(
            rf"generation {generation} ready; generation {generation - 1} retiring", timeout,
            start,
        )
        return start

    def stop_ok(self) -> None:
        """TERM, and the master exits 0."""
        self.signal(signal.SIGTERM)
        assert self.wait() == 0, self.text()


@contextlib.contextmanager
def server_process(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT,
    launcher: Sequence[str] = (),
) -> Iterator[ServerProcess]:
    server = ServerProcess(*args, env=env, cwd=cwd, launcher=launcher)
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


def pid_of(address: tuple[str, int], path: str = "/") -> int:
    """GET ``path`` from an app that answers with its pid (tests.apps.liveops): that pid."""
    status, body = http_get(*address, path=path)
    assert status == 200, (status, body)
    return int(body)


# -- forked children ----------------------------------------------------------------------------


@contextlib.contextmanager
def forked(body: Callable[[], int | None]) -> Iterator[int]:
    """Run ``body`` in a forked child and yield its pid.  The child exits with what ``body``
    returns (0 for None), or 1 with the traceback on stderr if it raises; it never returns
    into pytest.  The child is always reaped: killed first if still running when the block
    ends."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            status = body() or 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(status)
    try:
        yield pid
    finally:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG) == (0, 0):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


def wait_exit(pid: int, timeout: float = CHILD_TIMEOUT) -> int:
    """Reap child ``pid`` (waiting on its pidfd, up to ``timeout``); its exit code.  Fails if it
    is still running then (``forked`` kills it on the way out)."""
    pidfd = os.pidfd_open(pid)
    try:
        if not select.select([pidfd], [], [], max(0.0, timeout))[0]:
            raise AssertionError(f"child {pid} still running after {timeout} s")
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    finally:
        os.close(pidfd)


def in_child(fn: Callable[[], object], timeout: float = 10.0) -> Any:
    """Run ``fn`` in a forked child and return its JSON-able result (an exception in the child
    is re-raised here as AssertionError); the child is always reaped."""
    r, w = os.pipe()

    def body() -> None:
        os.close(r)
        out = fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, 20)  # clear of the fds 3.. a test places
        try:
            result: dict[str, object] = {"value": fn()}
        except BaseException as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(out, json.dumps(result).encode())

    deadline = time.monotonic() + timeout
    data = b""
    with forked(body) as pid:
        os.close(w)
        try:
            while select.select([r], [], [], max(0.0, deadline - time.monotonic()))[0]:
                chunk = os.read(r, 65536)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(r)
        code = wait_exit(pid, deadline - time.monotonic())
    assert code == 0, f"child exited with {code}, output {data!r}"
    result = json.loads(data)
    if "error" in result:
        raise AssertionError(f"in the child: {result['error']}")
    return result["value"]


def _is_template(proc: psutil.Process) -> bool:
    """A child of the master that is not a worker: a preload template or the --reload watcher."""
    try:
        title = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return "prefork: template" in title or "prefork: watcher" in title


def pids_tagged(tag: str) -> set[int]:
    """Pids of live (not zombie) processes whose command line holds ``tag``."""
    found = set()
    for proc in psutil.process_iter():
        try:
            if tag in " ".join(proc.cmdline()) and proc.status() != psutil.STATUS_ZOMBIE:
                found.add(proc.pid)
        except psutil.Error:
            continue
    return found


def kill_pids(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# An HTTP handler that answers with its worker's pid, for tests that write their own APP module.
PID_APP = '''
import os
from http.server import BaseHTTPRequestHandler


class App(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"%d\\n" % os.getpid()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass
'''
# The environment for an APP module written into a test's folder: this checkout importable, and
# no bytecode cache (a rewrite within the same second would otherwise be served from it).
APP_ENV = {"PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}


def write_pid_app(folder: Path, name: str, head: str = "") -> None:
    """``folder/name.py``: ``head`` (dedented: what runs at import), then :data:`PID_APP`."""
    (folder / f"{name}.py").write_text(textwrap.dedent(head) + PID_APP)
