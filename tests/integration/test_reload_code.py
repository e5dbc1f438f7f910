"""Which code a generation runs.  The master never imports the APP: each worker does (or, with
``--preload``, one template per generation), so HUP serves the current source; a module that
fails to import makes the new generation fail to boot and the old one keeps serving; with
``--preload`` a replacement in the old generation is forked from that generation's template and
runs the old code.

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
    "syntax-error": r"cannot load the APP: APP 'liveapp:App': cannot import liveapp: SyntaxError",
    "raise-at-import": r"cannot import liveapp: RuntimeError: this version cannot be imported",
    "no-handler": r"cannot load the APP: APP 'liveapp:App': module liveapp has no 'App'",
}
MODES = {"per-worker import": (), "preload": ("--preload",)}


def _write_app(tmp_path: Path, version: str, tail: str = "") -> None:
    (tmp_path / "liveapp.py").write_text(APP_SOURCE.format(version=version, tail=tail))


@contextlib.contextmanager
def _app_server(
    tmp_path: Path, *extra: str, workers: int = 2, env: dict[str, str] | None = None,
    tail: str = "",
) -> Iterator[ServerProcess]:
    _write_app(tmp_path, "v1", tail)
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


@pytest.mark.parametrize("mode", sorted(MODES))
def test_reload_serves_the_rewritten_module(tmp_path: Path, mode: str) -> None:
    with _app_server(tmp_path, *MODES[mode]) as server:
        address = server.tcp_address()
        old = server.ready_workers(2)
        version, pid = _answer(address)
        assert (version, pid in old) == ("v1", True)

        _write_app(tmp_path, "version-two")
        start = server.reload(2)
        new = server.ready_pids(start)
        wait_gone(old, "the first generation to retire")
        # (a template's title is read from its command line, which may lag its fork)
        wait_for(lambda: server.live() == new, what="only the new generation")
        for _ in range(6):
            version, pid = _answer(address)
            assert version == "version-two"
            assert pid in new
        server.stop_ok()


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("breakage", sorted(BROKEN_TAILS))
def test_reload_of_a_module_that_fails_to_import_keeps_the_old_code(
    tmp_path: Path, breakage: str, mode: str
) -> None:
    with _app_server(tmp_path, *MODES[mode]) as server:
        address = server.tcp_address()
        old = server.ready_workers(2)

        _write_app(tmp_path, "v3-broken", BROKEN_TAILS[breakage])
        start = server.mark()
        server.signal(signal.SIGHUP)
        server.wait_line(r"generation 2 failed to boot \(.*\); generation 1 keeps serving",
                         start=start)
        assert server.wait_line(RELOAD_ERRORS[breakage], start=start)
        wait_for(lambda: server.live() == old, what="the failed generation to be gone")
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
def test_with_preload_a_worker_forked_after_a_failed_reload_runs_the_old_code(
    tmp_path: Path, breakage: str
) -> None:
    """A replacement in generation 1 is forked from generation 1's template, which holds the
    code it loaded: the broken source on disk does not reach it.  (Without --preload a
    replacement imports what is on disk, as gunicorn's workers do.)"""
    with _app_server(tmp_path, "--preload", workers=1) as server:
        address = server.tcp_address()
        old = min(server.ready_workers(1))
        _write_app(tmp_path, "v3-broken", BROKEN_TAILS[breakage])
        start = server.mark()
        server.signal(signal.SIGHUP)
        server.wait_line(r"generation 1 keeps serving", start=start)
        assert _versions_served(address, {old}, 5) == {"v1"}
        # "Generation 1 keeps serving": a crashed worker's replacement is generation 1 too.
        replacement = _replace_the_worker(server, old)
        assert _versions_served(address, {replacement}, 5) == {"v1"}
        server.stop_ok()


def test_with_preload_a_worker_forked_after_a_generation_failed_to_boot_runs_the_old_code(
    tmp_path: Path,
) -> None:
    """Generation 2 imports fine but cannot boot (its post_fork hook fails): generation 1's
    template stays, so generation 1's replacements still run generation 1's code."""
    marker = tmp_path / "fail-now"
    (tmp_path / "prefork.toml").write_text(f'post_fork = "{HOOKS}:post_fork_fails_on_marker"\n')
    env = {"LIVEOPS_FAIL_MARKER": str(marker)}
    with _app_server(tmp_path, "-c", "prefork.toml", "--preload", workers=1, env=env) as server:
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


IMPORT_LOG_TAIL = """
with open(os.environ["IMPORT_LOG"], "a") as _log:
    _log.write("%d\\n" % os.getpid())
"""


@pytest.mark.parametrize("mode", sorted(MODES))
def test_the_app_is_imported_in_workers_or_templates_never_in_the_master(
    tmp_path: Path, mode: str
) -> None:
    log = tmp_path / "imports.log"
    env = {"IMPORT_LOG": str(log)}
    with _app_server(tmp_path, *MODES[mode], env=env, tail=IMPORT_LOG_TAIL) as server:
        server.tcp_address()
        workers = server.ready_workers(2)
        start = server.reload(2)
        workers |= server.ready_pids(start)
        importers = [int(line) for line in log.read_text().split()]
        assert server.pid not in importers
        assert len(importers) == len(set(importers))  # each process imports once
        if mode == "preload":  # once per generation, in its template
            loaders = {int(m.group(1)) for m in re.finditer(
                r"template of generation \d \(pid (\d+)\) ready", server.text())}
            assert len(loaders) == 2 and not workers & set(importers)
        else:  # in each worker of both generations
            loaders = workers
        # ... and once in the probe the master forks at start to learn what the APP is.
        assert loaders <= set(importers) and len(set(importers) - loaders) == 1
        server.stop_ok()
