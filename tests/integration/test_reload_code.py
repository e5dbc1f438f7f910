"""Which code a generation runs: HUP re-imports a rewritten handler module; a module that
fails to import (or a generation that fails to boot) keeps the old code, also in
workers forked later; ``--preload`` keeps the module loaded before the fork.

Every server is a real ``python -m prefork serve`` in its own session (see helpers.py);
waits are deadlines on observable things (log lines, pids, bytes received), never sleeps.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import (
    LOCAL,
    ROOT,
    ServerProcess,
    http_get,
    server_process,
    wait_for,
    wait_gone,
)

HOOKS = "tests.apps.liveops"


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
    wait_gone({worker}, "the killed worker")
    replacement = min(server.ready_workers(1))
    assert replacement != worker
    return replacement


def _versions_served(address: tuple[str, int], pids: set[int], count: int = 40) -> set[str]:
    answers = {_answer(address) for _ in range(count)}
    assert {pid for _, pid in answers} <= pids
    return {version for version, _ in answers}


def test_reload_serves_the_rewritten_module(tmp_path: Path) -> None:
    with _app_server(tmp_path) as server:
        address = server.tcp_address()
        old = server.ready_workers(2)
        version, pid = _answer(address)
        assert (version, pid in old) == ("v1", True)

        _write_app(tmp_path, "version-two")
        start = server.reload(2)
        new = server.ready_pids(start)
        wait_gone(old, "the first generation to retire")
        assert server.live() == new
        for _ in range(6):
            version, pid = _answer(address)
            assert version == "version-two"
            assert pid in new
        server.stop_ok()


@pytest.mark.parametrize("breakage", sorted(BROKEN_TAILS))
def test_reload_of_a_module_that_fails_to_import_keeps_the_old_code(
    tmp_path: Path, breakage: str
) -> None:
    with _app_server(tmp_path) as server:
        address = server.tcp_address()
        old = server.ready_workers(2)

        _write_app(tmp_path, "v3-broken", BROKEN_TAILS[breakage])
        start = server.mark()
        server.signal(signal.SIGHUP)
        server.wait_line(r"reload failed; generation 1 keeps serving", start=start)
        assert server.wait_line(RELOAD_ERRORS[breakage], start=start)
        assert not re.search(r"starting generation 2", server.text())
        assert server.live() == old
        assert _versions_served(address, old, 10) == {"v1"}

        # Once the module imports again, the next HUP brings the new code.
        _write_app(tmp_path, "v4-fixed")
        start = server.reload(2)
        new = server.ready_pids(start)
        wait_gone(old, "the old generation to retire")
        version, pid = _answer(address)
        assert (version, pid in new) == ("v4-fixed", True)
        server.stop_ok()


@pytest.mark.parametrize("breakage", sorted(BROKEN_TAILS))
def test_worker_forked_after_a_failed_reload_runs_the_old_code(
    tmp_path: Path, breakage: str
) -> None:
    """importlib.reload() runs the new source in the module's existing namespace: a reload
    that fails half way must not leave the old handler class running with new globals."""
    with _app_server(tmp_path, workers=1) as server:
        address = server.tcp_address()
        old = min(server.ready_workers(1))
        _write_app(tmp_path, "v3-broken", BROKEN_TAILS[breakage])
        start = server.mark()
        server.signal(signal.SIGHUP)
        server.wait_line(r"reload failed; generation 1 keeps serving", start=start)
        assert _versions_served(address, {old}, 5) == {"v1"}
        # "Generation 1 keeps serving": a crashed worker's replacement is generation 1 too.
        replacement = _replace_the_worker(server, old)
        assert _versions_served(address, {replacement}, 5) == {"v1"}
        server.stop_ok()


def test_worker_forked_after_a_generation_failed_to_boot_runs_the_old_code(
    tmp_path: Path,
) -> None:
    """The rollback of a reload whose generation cannot boot restores the module too."""
    marker = tmp_path / "fail-now"
    (tmp_path / "prefork.toml").write_text(f'post_fork = "{HOOKS}:post_fork_fails_on_marker"\n')
    env = {"LIVEOPS_FAIL_MARKER": str(marker)}
    with _app_server(tmp_path, "-c", "prefork.toml", workers=1, env=env) as server:
        address = server.tcp_address()
        old = min(server.ready_workers(1))
        _write_app(tmp_path, "version-two")  # imports fine; its generation will not boot
        marker.touch()
        start = server.mark()
        server.signal(signal.SIGHUP)
        server.wait_line(r"generation 2 failed to boot", start=start)
        wait_for(lambda: server.live() == {old}, what="the failed generation to be gone")
        assert _versions_served(address, {old}, 5) == {"v1"}
        marker.unlink()  # the replacement must boot
        replacement = _replace_the_worker(server, old)
        assert _versions_served(address, {replacement}, 5) == {"v1"}  # rolled back: old code
        server.stop_ok()


def test_reload_with_preload_keeps_the_loaded_module(tmp_path: Path) -> None:
    with _app_server(tmp_path, "--preload") as server:
        address = server.tcp_address()
        old = server.ready_workers(2)
        _write_app(tmp_path, "version-two")
        start = server.reload(2)
        new = server.ready_pids(start)
        assert len(new) == 2 and not new & old  # a new generation did start ...
        wait_gone(old, "the first generation to retire")
        for _ in range(6):
            version, pid = _answer(address)
            assert version == "v1"  # ... with the module loaded before the fork
            assert pid in new
        server.stop_ok()
