"""Live operations on a running server, the way an operator does them: signals to the master
(HUP reload, TTIN/TTOU scale, WINCH pause, USR1 log reopening), configuration layers, hooks,
socket activation with systemd's own tool, sd_notify and the pid file.

Every server is a real ``python -m prefork serve`` in its own session (see helpers.py); waits
are deadlines on observable things (log lines, pids, bytes received), never sleeps.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from helpers import ROOT, ServerProcess, http_get, pid_alive, server_process, wait_for

PID_APP = "tests.apps.liveops:PidHello"
LOGGING_APP = "tests.apps.liveops:LoggingHello"
HOOKS = "tests.apps.liveops"
LOCAL = "127.0.0.1:0"

# Test 1: as many HUPs in a row as fit in this budget, at least MIN_RELOADS, at most MAX_RELOADS.
MAX_RELOADS = 50
MIN_RELOADS = 20
RELOAD_BUDGET = 20.0  # seconds
CLIENTS = 3
MAX_REQUESTS_PER_CLIENT = 20_000  # the load is bounded even if the reload loop is not


# -- small helpers ------------------------------------------------------------------------------


def _clean_env(**extra: str) -> dict[str, str]:
    """os.environ without anything that would configure prefork behind the test's back."""
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("PREFORK_", "LISTEN_"))
        and key not in ("WEB_CONCURRENCY", "NOTIFY_SOCKET")
    }
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _pid_of(address: tuple[str, int], path: str = "/") -> int:
    status, body = http_get(*address, path=path)
    assert status == 200, (status, body)
    return int(body)


def _live(server: ServerProcess) -> set[int]:
    """Pids of the master's children that are alive (not zombies)."""
    try:
        children = psutil.Process(server.pid).children()
    except psutil.NoSuchProcess:
        return set()
    return {p.pid for p in children if pid_alive(p.pid)}


def _ready_workers(server: ServerProcess, count: int, timeout: float = 10.0) -> set[int]:
    """Wait until exactly ``count`` workers are alive and each has reported ready.

    Like ServerProcess.wait_workers, but a worker that exits while it is being looked at (a
    drained or retired one) is simply not counted, instead of raising NoSuchProcess."""
    def ready() -> set[int] | None:
        live = _live(server)
        return live if len(live) == count and live <= _ready_pids(server, 0) else None
    return wait_for(ready, timeout, what=f"{count} ready workers")


def _mark(server: ServerProcess) -> int:
    """Index of the next stderr line: a start for wait_line that skips everything seen so far."""
    server.text()  # collect what is queued, so older lines do not land after the mark
    return len(server.lines)


def _ready_pids(server: ServerProcess, start: int) -> set[int]:
    server.text()
    return {
        int(m.group(1)) for line in server.lines[start:]
        if (m := re.search(r"worker \d+ \(pid (\d+)\) ready", line))
    }


def _reload(server: ServerProcess, generation: int, timeout: float = 15.0) -> int:
    """HUP; wait until ``generation`` is ready.  Returns the mark taken before the HUP."""
    start = _mark(server)
    server.signal(signal.SIGHUP)
    server.wait_line(
        rf"generation {generation} ready; generation {generation - 1} retiring", timeout, start
    )
    return start


def _wait_gone(pids: set[int], what: str, timeout: float = 10.0) -> None:
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout, what=what)


def _signal_pending(pid: int, sig: int) -> bool:
    """True while ``sig`` is pending (sent, not yet delivered) for process ``pid``."""
    bit = 1 << (sig - 1)
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("SigPnd:", "ShdPnd:")) and int(line.split()[1], 16) & bit:
                return True
    return False


def _send_and_deliver(server: ServerProcess, sig: int) -> None:
    server.signal(sig)
    wait_for(lambda: not _signal_pending(server.pid, sig), 5, what=f"{sig!r} to be delivered")


def _stop(server: ServerProcess) -> None:
    server.signal(signal.SIGTERM)
    assert server.wait() == 0, server.text()


# -- 1. HUP under load -------------------------------------------------------------------------


def test_repeated_hup_under_load_fails_no_request() -> None:
    with server_process("serve", PID_APP, "-b", LOCAL, "-w", "2") as server:
        address = server.tcp_address()
        first = _ready_workers(server, 2)
        stop = threading.Event()
        lock = threading.Lock()
        served: list[int] = []
        failures: list[str] = []

        def client() -> None:
            for _ in range(MAX_REQUESTS_PER_CLIENT):
                if stop.is_set():
                    return
                try:
                    status, body = http_get(*address, timeout=10)
                    pid = int(body)
                except (OSError, ValueError, IndexError) as exc:
                    with lock:
                        failures.append(repr(exc))
                    continue
                with lock:
                    if status == 200:
                        served.append(pid)
                    else:
                        failures.append(f"status {status}")

        threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        reloads = 0
        last_start = 0
        try:
            wait_for(lambda: len(served) >= 10, what="the load to get going")
            deadline = time.monotonic() + RELOAD_BUDGET
            while reloads < MAX_RELOADS and time.monotonic() < deadline:
                before = len(served)
                last_start = _reload(server, reloads + 2)
                reloads += 1
                # The load overlaps every reload: requests keep completing across each one.
                wait_for(lambda n=before: len(served) >= n + CLIENTS,  # type: ignore[misc]
                         what="requests served across the reload")
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        assert not any(t.is_alive() for t in threads)
        assert reloads >= MIN_RELOADS, f"only {reloads} reloads in {RELOAD_BUDGET} s"
        assert failures == [], f"{len(failures)} failed of {len(served) + len(failures)}"
        assert len(served) > reloads  # the load ran all along

        # The survivors are exactly the workers that became ready in the last generation.
        last_generation = _ready_pids(server, last_start)
        assert len(last_generation) == 2
        wait_for(lambda: _live(server) == last_generation, what="only the last generation")
        assert not last_generation & first
        # Requests during the reloads were served by many generations, all of them ours.
        every_ready = _ready_pids(server, 0)
        assert set(served) <= every_ready
        assert len(set(served)) >= reloads
        for _ in range(6):
            assert _pid_of(address) in last_generation
        _stop(server)


# -- 2. reload re-imports a rewritten handler module ---------------------------------------------


APP_SOURCE = '''
import os
from http.server import BaseHTTPRequestHandler

VERSION = {version!r}


class App(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("%s %d\\n" % (VERSION, os.getpid())).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass
{tail}
'''

BROKEN_TAILS = {
    "syntax-error": "\ndef broken(:\n    pass\n",
    # These two run the module (VERSION and App are rebound) before the reload fails.
    "raise-at-import": "\nraise RuntimeError('this version cannot be imported')\n",
    "no-handler": "\ndel App\n",
}
RELOAD_ERRORS = {
    "syntax-error": r"cannot re-import liveapp: SyntaxError",
    "raise-at-import": r"cannot re-import liveapp: RuntimeError: this version cannot be imported",
    "no-handler": r"module liveapp has no 'App'",
}


def _write_app(tmp_path: Path, version: str, tail: str = "") -> None:
    (tmp_path / "liveapp.py").write_text(APP_SOURCE.format(version=version, tail=tail))


@contextlib.contextmanager
def _app_server(
    tmp_path: Path, *extra: str, workers: int = 2, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    _write_app(tmp_path, "v1")
    # No bytecode cache: a rewrite within the same second and of the same size as the old
    # source would otherwise be served from the stale .pyc (the .pyc is validated by the
    # source's mtime in whole seconds and its size).
    full_env = {"PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    args = ("serve", "liveapp:App", "-b", LOCAL, "-w", str(workers), *extra)
    with server_process(*args, cwd=tmp_path, env=full_env) as server:
        yield server


def _answer(address: tuple[str, int]) -> tuple[str, int]:
    status, body = http_get(*address)
    assert status == 200, (status, body)
    version, pid = body.split()
    return version.decode(), int(pid)


def _replace_the_worker(server: ServerProcess, worker: int) -> int:
    """SIGKILL the only worker; return the pid of the replacement the master forks."""
    os.kill(worker, signal.SIGKILL)
    _wait_gone({worker}, "the killed worker")
    replacement = min(_ready_workers(server, 1))
    assert replacement != worker
    return replacement


def _versions_served(address: tuple[str, int], pids: set[int], count: int = 40) -> set[str]:
    answers = {_answer(address) for _ in range(count)}
    assert {pid for _, pid in answers} <= pids
    return {version for version, _ in answers}


def test_reload_serves_the_rewritten_module(tmp_path: Path) -> None:
    with _app_server(tmp_path) as server:
        address = server.tcp_address()
        old = _ready_workers(server, 2)
        version, pid = _answer(address)
        assert (version, pid in old) == ("v1", True)

        _write_app(tmp_path, "version-two")
        start = _reload(server, 2)
        new = _ready_pids(server, start)
        _wait_gone(old, "the first generation to retire")
        assert _live(server) == new
        for _ in range(6):
            version, pid = _answer(address)
            assert version == "version-two"
            assert pid in new
        _stop(server)


@pytest.mark.parametrize("breakage", sorted(BROKEN_TAILS))
def test_reload_of_a_module_that_fails_to_import_keeps_the_old_code(
    tmp_path: Path, breakage: str
) -> None:
    with _app_server(tmp_path) as server:
        address = server.tcp_address()
        old = _ready_workers(server, 2)

        _write_app(tmp_path, "v3-broken", BROKEN_TAILS[breakage])
        start = _mark(server)
        server.signal(signal.SIGHUP)
        server.wait_line(r"reload failed; generation 1 keeps serving", start=start)
        assert server.wait_line(RELOAD_ERRORS[breakage], start=start)
        assert not re.search(r"starting generation 2", server.text())
        assert _live(server) == old
        assert _versions_served(address, old, 10) == {"v1"}

        # Once the module imports again, the next HUP brings the new code.
        _write_app(tmp_path, "v4-fixed")
        start = _reload(server, 2)
        new = _ready_pids(server, start)
        _wait_gone(old, "the old generation to retire")
        version, pid = _answer(address)
        assert (version, pid in new) == ("v4-fixed", True)
        _stop(server)


@pytest.mark.parametrize("breakage", sorted(BROKEN_TAILS))
def test_worker_forked_after_a_failed_reload_runs_the_old_code(
    tmp_path: Path, breakage: str
) -> None:
    """importlib.reload() runs the new source in the module's existing namespace: a reload
    that fails half way must not leave the old handler class running with new globals."""
    with _app_server(tmp_path, workers=1) as server:
        address = server.tcp_address()
        old = min(_ready_workers(server, 1))
        _write_app(tmp_path, "v3-broken", BROKEN_TAILS[breakage])
        start = _mark(server)
        server.signal(signal.SIGHUP)
        server.wait_line(r"reload failed; generation 1 keeps serving", start=start)
        assert _versions_served(address, {old}, 5) == {"v1"}
        # "Generation 1 keeps serving": a crashed worker's replacement is generation 1 too.
        replacement = _replace_the_worker(server, old)
        assert _versions_served(address, {replacement}, 5) == {"v1"}
        _stop(server)


def test_worker_forked_after_a_generation_failed_to_boot_runs_the_old_code(
    tmp_path: Path,
) -> None:
    """The rollback of a reload whose generation cannot boot restores the module too."""
    marker = tmp_path / "fail-now"
    (tmp_path / "prefork.toml").write_text(f'post_fork = "{HOOKS}:post_fork_fails_on_marker"\n')
    env = {"LIVEOPS_FAIL_MARKER": str(marker)}
    with _app_server(tmp_path, "-c", "prefork.toml", workers=1, env=env) as server:
        address = server.tcp_address()
        old = min(_ready_workers(server, 1))
        _write_app(tmp_path, "version-two")  # imports fine; its generation will not boot
        marker.touch()
        start = _mark(server)
        server.signal(signal.SIGHUP)
        server.wait_line(r"generation 2 failed to boot", start=start)
        wait_for(lambda: _live(server) == {old}, what="the failed generation to be gone")
        assert _versions_served(address, {old}, 5) == {"v1"}
        marker.unlink()  # the replacement must boot
        replacement = _replace_the_worker(server, old)
        assert _versions_served(address, {replacement}, 5) == {"v1"}  # rolled back: old code
        _stop(server)


def test_reload_with_preload_keeps_the_loaded_module(tmp_path: Path) -> None:
    with _app_server(tmp_path, "--preload") as server:
        address = server.tcp_address()
        old = _ready_workers(server, 2)
        _write_app(tmp_path, "version-two")
        start = _reload(server, 2)
        new = _ready_pids(server, start)
        assert len(new) == 2 and not new & old  # a new generation did start ...
        _wait_gone(old, "the first generation to retire")
        for _ in range(6):
            version, pid = _answer(address)
            assert version == "v1"  # ... with the module loaded before the fork
            assert pid in new
        _stop(server)


# -- 3. a new generation that cannot boot --------------------------------------------------------


def test_generation_that_fails_to_boot_leaves_the_old_one_serving(tmp_path: Path) -> None:
    marker = tmp_path / "fail-now"
    (tmp_path / "prefork.toml").write_text(f'post_fork = "{HOOKS}:post_fork_fails_on_marker"\n')
    env = {"PYTHONPATH": str(ROOT), "LIVEOPS_FAIL_MARKER": str(marker)}
    args = ("serve", PID_APP, "-c", "prefork.toml", "-b", LOCAL, "-w", "2")
    with server_process(*args, cwd=tmp_path, env=env) as server:
        address = server.tcp_address()
        old = _ready_workers(server, 2)

        marker.touch()
        start = _mark(server)
        server.signal(signal.SIGHUP)
        server.wait_line(r"generation 2 failed to boot .*; generation 1 keeps serving",
                         start=start)
        assert server.wait_line(r"post_fork refuses worker", start=start)
        wait_for(lambda: _live(server) == old, what="the failed generation to be gone")
        assert {_pid_of(address) for _ in range(10)} <= old
        assert not re.search(r"generation 2 ready", server.text())

        # The failure did not count toward stopping the server: fixed, the next HUP works.
        marker.unlink()
        start = _reload(server, 2)
        new = _ready_pids(server, start)
        _wait_gone(old, "the first generation to retire")
        assert _pid_of(address) in new
        _stop(server)


# -- 4. TTIN / TTOU / WINCH ----------------------------------------------------------------------


def _next_size_change(server: ServerProcess, start: int) -> str:
    return server.wait_line(r"pool size (\d+ -> \d+)", start=start).group(1)


def _backlog_requests(address: tuple[str, int], count: int) -> list[socket.socket]:
    """Connections made (and requests sent) while nobody accepts: they wait in the backlog."""
    socks = []
    for i in range(count):
        sock = socket.create_connection(address, timeout=15)
        sock.sendall(f"GET /backlog/{i} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        socks.append(sock)
    return socks


def _read_reply(sock: socket.socket) -> tuple[int, int]:
    with sock:
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), int(body)


def test_ttin_ttou_scale_within_bounds_and_winch_pauses() -> None:
    args = ("serve", PID_APP, "-b", LOCAL, "-w", "2", "--max-children", "3")
    with server_process(*args) as server:
        address = server.tcp_address()
        _ready_workers(server, 2)

        start = _mark(server)
        server.signal(signal.SIGTTIN)
        assert _next_size_change(server, start) == "2 -> 3"
        _ready_workers(server, 3)

        # At max_children a TTIN changes nothing: the next change seen is the TTOU's.
        start = _mark(server)
        _send_and_deliver(server, signal.SIGTTIN)
        server.signal(signal.SIGTTOU)
        assert _next_size_change(server, start) == "3 -> 2"
        _ready_workers(server, 2)

        start = _mark(server)
        server.signal(signal.SIGTTOU)
        assert _next_size_change(server, start) == "2 -> 1"
        last = min(_ready_workers(server, 1))
        assert {_pid_of(address) for _ in range(5)} == {last}

        # At one worker a TTOU changes nothing.  WINCH (a higher signal number, so handled
        # after the TTOU even if both are pending at once) logs a line: nothing may come before.
        start = _mark(server)
        server.signal(signal.SIGTTOU)
        server.signal(signal.SIGWINCH)
        pause = server.wait_line(r"stopping all workers; HUP or TTIN to resume", start=start)
        server.text()
        before_pause = server.lines[start:server.lines.index(pause.string)]
        assert not [line for line in before_pause if "pool size" in line], before_pause

        # Paused: no worker, but the master and its socket stay; connections queue up.
        _wait_gone({last}, "the paused pool's worker")
        wait_for(lambda: not _live(server), what="no worker while paused")
        assert pid_alive(server.pid)
        waiting = _backlog_requests(address, 4)
        assert not _live(server)

        start = _mark(server)
        server.signal(signal.SIGTTIN)
        assert _next_size_change(server, start) == "1 -> 2"
        resumed = _ready_workers(server, 2)
        replies = [_read_reply(sock) for sock in waiting]
        assert all(status == 200 for status, _ in replies), replies
        assert {pid for _, pid in replies} <= resumed
        _stop(server)


def test_winch_pause_then_hup_serves_the_backlog() -> None:
    with server_process("serve", PID_APP, "-b", LOCAL, "-w", "2") as server:
        address = server.tcp_address()
        old = _ready_workers(server, 2)
        server.signal(signal.SIGWINCH)
        server.wait_line(r"stopping all workers")
        _wait_gone(old, "the paused workers")
        assert pid_alive(server.pid) and not _live(server)
        waiting = _backlog_requests(address, 5)

        start = _reload(server, 2)
        new = _ready_pids(server, start)
        replies = [_read_reply(sock) for sock in waiting]
        assert [status for status, _ in replies] == [200] * 5
        assert {pid for _, pid in replies} <= new
        _stop(server)


# -- 5. USR1 reopens log files -------------------------------------------------------------------


def _file_match(path: Path, pattern: str) -> re.Match[str] | None:
    with contextlib.suppress(FileNotFoundError):
        return re.search(pattern, path.read_text(), re.MULTILINE)
    return None


def _wait_file(path: Path, pattern: str, timeout: float = 10.0) -> re.Match[str]:
    return wait_for(lambda: _file_match(path, pattern), timeout, what=f"{pattern!r} in {path}")


def test_usr1_reopens_the_log_file_after_rotation(tmp_path: Path) -> None:
    log_file = tmp_path / "prefork.log"
    rotated = tmp_path / "prefork.log.1"
    args = ("serve", LOGGING_APP, "-b", LOCAL, "-w", "1", "--log-file", str(log_file))
    with server_process(*args) as server:
        where = _wait_file(log_file, r"serving \S+ on http://([\d.]+):(\d+)/").groups()
        address = (where[0], int(where[1]))
        worker = int(_wait_file(log_file, r"worker 1 \(pid (\d+)\) ready").group(1))
        assert _pid_of(address, "/before") == worker
        _wait_file(log_file, rf"\[{worker}\] INFO liveops: request /before served")

        log_file.rename(rotated)  # what logrotate does
        server.signal(signal.SIGUSR1)
        _wait_file(log_file, rf"\[{server.pid}\] INFO prefork.master: .*reopened log files")
        # The worker reopens too: its lines (same worker, no respawn) land in the new file.
        attempt = itertools.count()
        wait_for(
            lambda: _pid_of(address, f"/after/{next(attempt)}") == worker
            and _file_match(log_file, rf"\[{worker}\] INFO liveops: request /after/\d+ served"),
            what="a worker line in the reopened file",
        )
        assert server.workers()[0].pid == worker
        _stop(server)
        assert _file_match(log_file, rf"master \(pid {server.pid}\) stopped")
        old_text = rotated.read_text()
        assert "serving" in old_text and "request /before served" in old_text
        assert "reopened log files" not in old_text
        assert server.text() == ""  # everything went to the file


# -- 6. configuration layers ---------------------------------------------------------------------


def _prefork(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prefork", *args], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=30, stdin=subprocess.DEVNULL,
    )


def _settings(output: str) -> dict[str, tuple[str, str]]:
    """``--print-config`` lines as {key: (value, source)}."""
    result = {}
    for line in output.splitlines():
        key, _, rest = line.partition(" = ")
        value, _, source = rest.partition("  # ")
        result[key] = (value, source)
    return result


@pytest.mark.parametrize(
    ("env", "flags", "workers"),
    [
        ({}, [], ("3", "file prefork.toml")),
        ({"WEB_CONCURRENCY": "4"}, [], ("4", "env WEB_CONCURRENCY")),
        ({"WEB_CONCURRENCY": "4", "PREFORK_WORKERS": "5"}, [], ("5", "env PREFORK_WORKERS")),
        ({"WEB_CONCURRENCY": "4", "PREFORK_WORKERS": "5"}, ["-w", "6"], ("6", "command line")),
    ],
)
def test_print_config_precedence(
    tmp_path: Path, env: dict[str, str], flags: list[str], workers: tuple[str, str]
) -> None:
    (tmp_path / "prefork.toml").write_text(
        "workers = 3\nmax_requests = 100\ngraceful_timeout = 5\nmax_children = 10\n"
    )
    result = _prefork(
        "serve", "-c", "prefork.toml", "--print-config", "--timeout", "9", *flags,
        cwd=tmp_path, env=_clean_env(PREFORK_MAX_REQUESTS="200", **env),
    )
    assert result.returncode == 0, result.stderr
    settings = _settings(result.stdout)
    assert settings["workers"] == workers
    assert settings["max_requests"] == ("200", "env PREFORK_MAX_REQUESTS")  # env beats file
    assert settings["graceful_timeout"] == ("5.0", "file prefork.toml")
    assert settings["max_children"] == ("10", "file prefork.toml")
    assert settings["request_timeout"] == ("9.0", "command line")
    assert settings["max_age"] == ("0.0", "default")
    assert settings["bind"] == ('["127.0.0.1:8000"]', "default")


@pytest.mark.parametrize(
    ("file_text", "env", "names"),
    [
        ("wrokers = 2\n", {}, "wrokers"),
        ("", {"PREFORK_WORKERS": "-1"}, "PREFORK_WORKERS"),
        ("", {"WEB_CONCURRENCY": "many"}, "WEB_CONCURRENCY"),
        ("", {"PREFORK_WROKERS": "2"}, "PREFORK_WROKERS"),
    ],
)
def test_invalid_config_fails_before_any_fork(
    tmp_path: Path, file_text: str, env: dict[str, str], names: str
) -> None:
    hook_log = tmp_path / "hooks.log"
    (tmp_path / "prefork.toml").write_text(
        f'pre_fork = "{HOOKS}:pre_fork"\non_starting = "{HOOKS}:on_starting"\n{file_text}'
    )
    result = _prefork(
        "serve", PID_APP, "-c", "prefork.toml", "-b", LOCAL, "-w", "1", cwd=tmp_path,
        env=_clean_env(LIVEOPS_HOOK_LOG=str(hook_log), **env),
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("prefork: ") and names in lines[0], lines
    assert "Traceback" not in result.stderr
    assert not hook_log.exists()  # not even on_starting ran, let alone a fork


def test_pyproject_tool_prefork_table_is_read(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "demo"\n\n[tool.prefork]\n'
        f'app = "{PID_APP}"\nbind = "{LOCAL}"\nworkers = 3\ngraceful-timeout = 4\n'
    )
    result = _prefork("serve", "--print-config", cwd=tmp_path, env=_clean_env())
    assert result.returncode == 0, result.stderr
    settings = _settings(result.stdout)
    assert settings["workers"] == ("3", "file pyproject.toml")
    assert settings["graceful_timeout"] == ("4.0", "file pyproject.toml")
    assert settings["app"] == (f'"{PID_APP}"', "file pyproject.toml")

    # And `serve` with no arguments serves what the table says.
    with server_process("serve", cwd=tmp_path, env={"PYTHONPATH": str(ROOT)}) as server:
        address = server.tcp_address()
        pool = _ready_workers(server, 3)
        assert {_pid_of(address) for _ in range(5)} <= pool
        _stop(server)


# -- 7. hooks ------------------------------------------------------------------------------------


ALL_HOOKS = ("on_starting", "pre_fork", "post_fork", "post_worker_init", "worker_exit",
             "on_reload", "on_exit")


def test_hooks_are_called_in_order(tmp_path: Path) -> None:
    hook_log = tmp_path / "hooks.log"
    (tmp_path / "prefork.toml").write_text(
        "".join(f'{hook} = "{HOOKS}:{hook}"\n' for hook in ALL_HOOKS)
    )
    env = {"PYTHONPATH": str(ROOT), "LIVEOPS_HOOK_LOG": str(hook_log)}
    args = ("serve", PID_APP, "-c", "prefork.toml", "-b", LOCAL, "-w", "2")
    with server_process(*args, cwd=tmp_path, env=env) as server:
        address = server.tcp_address()
        first = _ready_workers(server, 2)
        _pid_of(address)
        _reload(server, 2)
        _wait_gone(first, "the first generation")
        _stop(server)
        master = server.pid

    records = [line.split() for line in hook_log.read_text().splitlines()]
    names = [r[0] for r in records]
    counts = {hook: names.count(hook) for hook in ALL_HOOKS}
    assert counts == {"on_starting": 1, "pre_fork": 4, "post_fork": 4, "post_worker_init": 4,
                      "worker_exit": 4, "on_reload": 1, "on_exit": 1}, records
    assert records[0] == ["on_starting", str(master)]
    assert records[-1] == ["on_exit", str(master)]
    for age in ("1", "2", "3", "4"):
        pre, post, init, exit_ = (
            next(i for i, r in enumerate(records) if r[0] == hook and r[1] == age)
            for hook in ("pre_fork", "post_fork", "post_worker_init", "worker_exit")
        )
        assert pre < post < init < exit_, (age, records)
        assert records[pre][2] == str(master)  # pre_fork runs in the master ...
        worker_pid = records[post][2]  # ... post_fork and post_worker_init in the worker
        assert worker_pid != str(master) and records[init][2] == worker_pid
        assert records[exit_][2:] == [worker_pid, "0"]  # worker_exit: that pid, status 0
    reload_at = names.index("on_reload")
    assert max(i for i, r in enumerate(records) if r[:2] in (["pre_fork", "1"], ["pre_fork", "2"])
               ) < reload_at
    assert reload_at < min(i for i, r in enumerate(records)
                           if r[:2] in (["pre_fork", "3"], ["pre_fork", "4"]))


def test_failing_post_fork_hook_exits_3_after_bounded_spawns(tmp_path: Path) -> None:
    hook_log = tmp_path / "hooks.log"
    (tmp_path / "prefork.toml").write_text(
        f'pre_fork = "{HOOKS}:pre_fork"\npost_fork = "{HOOKS}:post_fork_always_fails"\n'
        f'on_exit = "{HOOKS}:on_exit"\n'
    )
    env = {"PYTHONPATH": str(ROOT), "LIVEOPS_HOOK_LOG": str(hook_log)}
    args = ("serve", PID_APP, "-c", "prefork.toml", "-b", LOCAL, "-w", "2")
    with server_process(*args, cwd=tmp_path, env=env) as server:
        assert server.wait(timeout=30) == 3
        assert server.wait_line(r"workers fail to boot: 5 in a row")
        assert server.wait_line(r"RuntimeError: post_fork refuses worker")
    names = [line.split()[0] for line in hook_log.read_text().splitlines()]
    # 2 at start, then one probe at a time until 5 failures in a row.
    assert 5 <= names.count("pre_fork") <= 6, names
    assert names[-1] == "on_exit"


# -- 8. socket activation ------------------------------------------------------------------------


class CommandProcess(ServerProcess):
    """Like ServerProcess, for any command line (here: systemd-socket-activate ... prefork)."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path = ROOT) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        self.lines = []
        self._queue = queue.Queue()
        self._seen = set()
        threading.Thread(target=self._pump, daemon=True).start()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening_or_exited(proc: CommandProcess, port: int) -> bool:
    if proc.proc.poll() is not None:
        return True
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_socket_activation_with_systemd_socket_activate() -> None:
    tool = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"
    if not os.access(tool, os.X_OK):
        pytest.skip("systemd-socket-activate is not installed")
    for _ in range(5):  # the port picked may be taken by someone else before the tool binds it
        port = _free_port()
        argv = [tool, "-l", f"127.0.0.1:{port}", "-E", f"PYTHONPATH={ROOT}",
                sys.executable, "-m", "prefork", "serve", "workers.http_hello:Hello", "-w", "2"]
        proc = CommandProcess(argv, env=_clean_env())
        try:
            wait_for(lambda p=proc, n=port: _listening_or_exited(p, n),  # type: ignore[misc]
                     what="systemd-socket-activate to listen")
            if proc.proc.poll() is not None:
                continue  # it could not listen: try another port
            # The first connection makes the tool exec prefork with the socket as fd 3.
            assert http_get("127.0.0.1", port) == (200, b"Hello, world!\n")
            line = proc.wait_line(r"serving workers.http_hello:Hello on (\S+) ")
            assert line.group(1) == f"http://127.0.0.1:{port}/"
            assert proc.wait_line(r"Execing ")  # the tool's own line: prefork was socket-activated
            workers = _ready_workers(proc, 2)
            assert proc.pid == int(proc.wait_line(r"master \(pid (\d+)\) starting").group(1))
            for _ in range(10):
                assert http_get("127.0.0.1", port) == (200, b"Hello, world!\n")
            proc.signal(signal.SIGTERM)
            assert proc.wait() == 0
            _wait_gone(workers, "the workers")
            return
        finally:
            proc.cleanup()
    pytest.fail("no free port systemd-socket-activate could listen on in 5 attempts")


# -- 9. sd_notify --------------------------------------------------------------------------------


def _notification(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def test_sd_notify_ready_reloading_stopping(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    if len(path) >= 100:  # sun_path limit
        pytest.skip("tmp_path too long for a unix socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(15)
        with server_process("serve", PID_APP, "-b", LOCAL, "-w", "2",
                            env={"NOTIFY_SOCKET": path}) as server:
            ready = _notification(sock)
            assert ready["READY"] == "1", ready
            assert "2 workers, generation 1" in ready["STATUS"]
            # Sent once the pool is ready: the master logged both workers ready before it.
            assert len(_ready_workers(server, 2, timeout=5)) == 2

            before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            server.signal(signal.SIGHUP)
            reloading = _notification(sock)
            after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            assert reloading["RELOADING"] == "1", reloading
            assert before <= int(reloading["MONOTONIC_USEC"]) <= after
            ready_again = _notification(sock)
            assert ready_again["READY"] == "1", ready_again
            assert "generation 2" in ready_again["STATUS"]
            assert server.wait_line(r"generation 2 ready; generation 1 retiring", timeout=1)

            server.signal(signal.SIGTERM)
            stopping = _notification(sock)
            assert stopping["STOPPING"] == "1", stopping
            assert server.wait() == 0
            # Anything after that is STOPPING again, never READY.
            sock.settimeout(0)
            rest = []
            with contextlib.suppress(BlockingIOError):
                while True:
                    rest.append(_notification(sock))
            assert all("STOPPING" in message for message in rest), rest


# -- 10. pid file --------------------------------------------------------------------------------


def test_pidfile_names_the_master_and_is_removed_on_stop(tmp_path: Path) -> None:
    pidfile = tmp_path / "prefork.pid"
    with server_process("serve", PID_APP, "-b", LOCAL, "-w", "1", "--pidfile",
                        str(pidfile)) as server:
        server.tcp_address()
        _ready_workers(server, 1)
        assert pidfile.read_text() == f"{server.pid}\n"
        assert Path(f"{pidfile}.ctl").exists()  # the control socket goes next to it
        _stop(server)
    assert not pidfile.exists()
    assert not Path(f"{pidfile}.ctl").exists()
    assert not list(tmp_path.glob("*.tmp"))
