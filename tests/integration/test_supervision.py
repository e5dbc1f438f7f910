"""Supervision end to end: process titles, hung-request kills, recycling, the control socket.

Each test runs ``prefork serve tests.apps.supervision:Supervised`` as a real process and looks
at what a user would see: ``/proc/PID/cmdline``, the log on stderr, pids coming and going,
``prefork status|scale|stop`` run as commands.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from helpers import ROOT, ServerProcess, forked, pid_alive, server_process, wait_exit, wait_for
from prefork.command.cli import main as cli_main
from prefork.ops import titles

APP = "tests.apps.supervision:Supervised"
NOBODY = 65534


# -- helpers ------------------------------------------------------------------------------------

def _serve(*args: str) -> contextlib.AbstractContextManager[ServerProcess]:
    return server_process("serve", APP, "-b", "127.0.0.1:0", *args)


def _ask(address: tuple[str, int], command: bytes) -> socket.socket:
    """Send one command line; the caller reads the reply."""
    sock = socket.create_connection(address, timeout=15)
    sock.sendall(command + b"\n")
    return sock


def _pid_of(address: tuple[str, int], command: bytes = b"pid") -> int:
    """A whole quick request: the pid of the worker that served it."""
    with _ask(address, command) as sock:
        return int(sock.makefile("rb").readline())


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode().strip()


def _prefork(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``python -m prefork ARGS`` as a command, run to completion."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "prefork", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _status(*where: str) -> dict[str, Any]:
    proc = _prefork("status", *where, "--json")
    assert proc.returncode == 0, proc.stderr
    reply: dict[str, Any] = json.loads(proc.stdout)
    return reply


def _live_children(server: ServerProcess) -> set[int]:
    return {p.pid for p in server.workers() if pid_alive(p.pid)}


def _index(server: ServerProcess, pattern: str, timeout: float = 10.0) -> int:
    """Index in the log of the first line matching ``pattern``, waiting for it."""
    server.wait_line(pattern, timeout)
    regex = re.compile(pattern)
    return next(i for i, line in enumerate(server.lines) if regex.search(line))


def _wait_seconds(seconds: float) -> None:
    """Let wall time pass with a deadline (for "nothing happens for a while" checks)."""
    until = time.monotonic() + seconds
    wait_for(lambda: time.monotonic() >= until, timeout=seconds + 5, interval=0.05,
             what=f"{seconds} s to pass")


# -- process titles -----------------------------------------------------------------------------

def test_titles_show_master_and_worker_states() -> None:
    if not titles.available():
        pytest.skip("setproctitle is not installed: titles are off")
    name = f"sv{os.getpid()}"  # unique per xdist worker, so pgrep finds only this pool
    with _serve("-w", "2", "--name", name) as server:
        host, port = server.tcp_address()
        workers = server.wait_workers(2)
        wait_for(lambda: _cmdline(server.pid) == f"prefork: master [{name}] 2 workers "
                 f"{host}:{port}", what="the master's title")
        idle = {w.pid: _cmdline(w.pid) for w in workers}
        numbers = set()
        for text in idle.values():
            match = re.fullmatch(rf"prefork: worker (\d+) \[{name}\] idle 0 req", text)
            assert match, idle
            numbers.add(int(match.group(1)))
        assert numbers == {1, 2}

        client = _ask((host, port), b"wait")
        busy_pid = int(client.makefile("rb").readline())
        number = re.search(r"worker (\d+)", idle[busy_pid]).group(1)  # type: ignore[union-attr]
        # The first request after boot always shows (later ones are rate-limited: TITLE_INTERVAL).
        wait_for(lambda: _cmdline(busy_pid) == f"prefork: worker {number} [{name}] busy 0 req",
                 what="the busy title")
        client.sendall(b"done\n")
        client.close()
        wait_for(lambda: _cmdline(busy_pid) == f"prefork: worker {number} [{name}] idle 1 req",
                 what="idle again, one request served")

        if shutil.which("pgrep"):
            found = subprocess.run(["pgrep", "-f", rf"prefork: worker [0-9]+ \[{name}\]"],
                                   capture_output=True, text=True, timeout=10)
            assert {int(pid) for pid in found.stdout.split()} == set(idle)
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


# -- request timeout ----------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["hang", "spin"])
def test_timeout_dumps_the_stack_and_replaces_the_worker(command: str) -> None:
    with _serve("-w", "1", "--timeout", "1") as server:
        address = server.tcp_address()
        old = server.wait_workers(1)[0].pid
        client = _ask(address, command.encode())
        pids = [int(p) for p in client.makefile("rb").readline().split()]
        assert pids[0] == old
        line = server.wait_line(rf"worker 1 \(pid {old}\) request in flight for [\d.]+ s "
                                r"\(timeout 1\.0 s\): dumping its stack", timeout=10)
        function = "handle" if command == "hang" else "spin_forever"
        dump = server.wait_line(rf'File ".*supervision\.py", line \d+ in {function}$', timeout=5)
        assert line and dump
        wait_for(lambda: not pid_alive(old), timeout=5, what="the hung worker to be killed")
        if command == "hang":
            child = pids[1]
            wait_for(lambda: not pid_alive(child), timeout=5, what="its subprocess to go too")
        assert client.recv(100) == b""  # the connection died with the worker
        client.close()
        new = server.wait_workers(1)[0].pid
        assert new != old
        assert _pid_of(address) == new
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        assert "died" not in server.text()  # a timeout kill is a replacement, not a crash


def test_idle_and_quick_workers_are_never_timed_out() -> None:
    # --timeout 0.4: the master looks at the scoreboard every 0.1 s.
    with _serve("-w", "2", "--timeout", "0.4") as server:
        address = server.tcp_address()
        before = {w.pid for w in server.wait_workers(2)}
        served = {_pid_of(address) for _ in range(10)}
        _wait_seconds(2.0)  # 20 checks, 5 timeouts long
        served |= {_pid_of(address) for _ in range(10)}
        assert served <= before
        assert _live_children(server) == before
        assert "request in flight" not in server.text()
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


# -- recycling ----------------------------------------------------------------------------------

def _load(address: tuple[str, int], threads: int, per_thread: int) -> tuple[list[int], int]:
    """``threads`` clients doing ``per_thread`` requests each: (serving pids in order, failures)."""
    pids: list[int] = []
    failures = [0]
    lock = threading.Lock()

    def client() -> None:
        for _ in range(per_thread):
            try:
                pid = _pid_of(address)
            except (OSError, ValueError):
                with lock:
                    failures[0] += 1
                continue
            with lock:
                pids.append(pid)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(60)
    return pids, failures[0]


def test_max_requests_recycles_under_load_without_failures() -> None:
    args = ("-w", "2", "--max-requests", "20", "--max-requests-jitter", "10")
    with _serve(*args) as server:
        address = server.tcp_address()
        server.wait_workers(2)
        pids, failures = _load(address, threads=4, per_thread=150)
        assert failures == 0
        assert len(pids) == 600
        # Replacements serve too: under a loaded machine the 600 can all be done before the
        # first replacement is ready, so the load goes on (bounded) until one has served.
        deadline = time.monotonic() + 20
        while len(set(pids)) <= 2 and time.monotonic() < deadline:
            more, failures = _load(address, threads=4, per_thread=25)
            assert failures == 0
            pids += more
        counts = collections.Counter(pids)
        assert len(counts) > 2, counts

        def recycled() -> set[int]:
            return {int(m.group(1)) for line in server.text().splitlines()
                    if (m := re.search(r"\(pid (\d+)\) due for recycling \(max_requests\)", line))}

        # A worker that served 30 (max_requests + jitter) has passed its recycle point: the
        # master must have been told.  (The log arrives through a pipe: wait for it.)
        over = {pid for pid, count in counts.items() if count >= 30}
        wait_for(lambda: over <= recycled(), what=f"{over} to be recycled")
        due = recycled()
        assert len(due) >= 2, server.text()
        # Nobody is recycled before max_requests.
        assert all(counts[pid] >= 20 for pid in due), counts
        # Workers are not recycled in lockstep: what each served differs (its jittered recycle
        # point plus the requests it took while its replacement booted).
        assert len({counts[pid] for pid in due}) > 1, counts
        server.wait_workers(2)
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


def test_max_memory_recycles_a_leaking_worker() -> None:
    with _serve("-w", "1", "--max-memory", "80") as server:
        address = server.tcp_address()
        old = server.wait_workers(1)[0].pid
        for _ in range(12):  # about 100 MB more than at boot
            assert _pid_of(address, b"leak") == old
        # The master looks at memory every 5 s (MEMORY_CHECK_INTERVAL).
        server.wait_line(rf"worker 1 \(pid {old}\) due for recycling \(max_memory\)", timeout=15)
        wait_for(lambda: not pid_alive(old), timeout=10, what="the leaking worker to retire")
        new = server.wait_workers(1)[0].pid
        assert new != old
        assert _pid_of(address) == new
        assert psutil.Process(new).memory_info().rss < 80 * 1024 * 1024
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


def test_max_age_starts_the_replacement_before_retiring() -> None:
    start = time.monotonic()
    with _serve("-w", "2", "--max-age", "1", "--log-level", "debug") as server:
        address = server.tcp_address()
        first = [w.pid for w in server.wait_workers(2)]
        for old in first:
            due = _index(server, rf"\(pid {old}\) due for recycling \(max_age\)", timeout=10)
            assert time.monotonic() - start >= 1.0
            stopped = _index(server, rf"master: worker \d+ \(pid {old}\) stopped", timeout=10)
            # Some other worker became ready after the recycling began and before the old one
            # was gone: capacity never dropped below -w.
            ready = [int(m.group(1)) for line in server.lines[due:stopped]
                     if (m := re.search(r"worker \d+ \(pid (\d+)\) ready", line))]
            assert set(ready) - set(first), server.text()
        assert not _live_children(server) & set(first)
        assert _pid_of(address) not in first
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


# -- status and control -------------------------------------------------------------------------

def test_status_scale_and_stop_through_the_control_socket(tmp_path: Path) -> None:
    pidfile = str(tmp_path / "prefork.pid")
    with _serve("-w", "2", "--name", "ctl", "--pidfile", pidfile) as server:
        workers = server.wait_workers(2)
        wait_for(lambda: os.path.exists(pidfile + ".ctl"), what="the control socket")
        assert Path(pidfile).read_text().strip() == str(server.pid)

        status = _status("--pidfile", pidfile)
        assert status["ok"] is True
        master = status["master"]
        assert (master["pid"], master["name"], master["size"], master["generation"]) == (
            server.pid, "ctl", 2, 1)
        assert {w["pid"] for w in status["workers"]} == {w.pid for w in workers}
        assert _live_children(server) == {w.pid for w in workers}
        assert all(w["state"] == "idle" and w["generation"] == 1 for w in status["workers"])

        table = _prefork("status", "--pidfile", pidfile)
        assert table.returncode == 0, table.stderr
        rows = table.stdout.splitlines()[2:]
        assert len(rows) == 2
        assert {int(row.split()[1]) for row in rows} == {w.pid for w in workers}

        scaled = _prefork("scale", "3", "--pidfile", pidfile)
        assert scaled.returncode == 0, scaled.stderr
        assert "pool size 3" in scaled.stdout
        three = {w.pid for w in server.wait_workers(3)}
        assert {w["pid"] for w in _status("--pidfile", pidfile)["workers"]} == three

        scaled = _prefork("scale", "-1", "--pidfile", pidfile)
        assert scaled.returncode == 0, scaled.stderr
        assert "pool size 2" in scaled.stdout
        two = {w.pid for w in server.wait_workers(2)}
        assert two < three
        wait_for(lambda: len(_status("--pidfile", pidfile)["workers"]) == 2,
                 what="status to show 2 workers")

        stopped = _prefork("stop", "--pidfile", pidfile)
        assert stopped.returncode == 0, stopped.stderr
        assert server.wait() == 0
        assert not any(pid_alive(pid) for pid in three)
    assert not os.path.exists(pidfile)
    assert not os.path.exists(pidfile + ".ctl")


@contextlib.contextmanager
def _shared_dir() -> Iterator[Path]:
    """A directory another user can traverse (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="prefork-ctl-"))
    try:
        path.chmod(0o711)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _cli_as(uid: int, *argv: str) -> tuple[int, str]:
    """Run the ``prefork`` command's code as ``uid`` in a forked child: (exit status, stderr).

    A fork rather than a new interpreter: the interpreter may live where that user cannot
    reach it (under /root, mode 0700).
    """
    read_fd, write_fd = os.pipe()

    def child() -> int:  # drop privileges, run the command
        os.close(read_fd)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        sys.stderr = sys.stdout = os.fdopen(write_fd, "w")
        status = cli_main(list(argv))
        sys.stderr.flush()
        return status

    with forked(child) as pid:
        os.close(write_fd)
        with os.fdopen(read_fd) as f:
            err = f.read()
        return wait_exit(pid), err


def test_control_socket_refuses_another_user() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user")
    with _shared_dir() as shared:
        control = str(shared / "prefork.ctl")
        with _serve("-w", "1", "--control", control) as server:
            server.wait_workers(1)
            wait_for(lambda: os.path.exists(control), what="the control socket")
            assert os.stat(control).st_mode & 0o777 == 0o600

            code, err = _cli_as(NOBODY, "status", "--control", control)
            assert code != 0
            assert "permission denied" in err.lower(), err

            # Even with the file opened up, the master checks who connects (SO_PEERCRED).
            os.chmod(control, 0o666)
            code, err = _cli_as(NOBODY, "status", "--control", control)
            assert code != 0
            assert "permission denied" in err.lower(), err
            assert server.wait_line(rf"control socket: refused pid \d+ \(uid {NOBODY}\)")

            served = _prefork("status", "--control", control)
            assert served.returncode == 0, served.stderr
            assert str(server.pid) in served.stdout
            server.signal(signal.SIGTERM)
            assert server.wait() == 0


def test_top_redraws_the_status_table(tmp_path: Path) -> None:
    control = str(tmp_path / "ctl.sock")
    with server_process("serve", "-b", "127.0.0.1:0", "-w", "2", "--control", control) as server:
        workers = server.wait_workers(2)
        wait_for(lambda: os.path.exists(control), what="the control socket")
        proc = subprocess.run(
            [sys.executable, "-m", "prefork", "top", "--control", control, "--count", "2",
             "--interval", "0.05"],
            cwd=ROOT, capture_output=True, text=True, timeout=30,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert proc.returncode == 0, proc.stderr
        screens = proc.stdout.split("\x1b[H\x1b[2J")[1:]
        assert len(screens) == 2
        for screen in screens:
            assert "prefork top" in screen
            for worker in workers:
                assert f" {worker.pid} " in screen
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
