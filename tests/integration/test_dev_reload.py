"""--reload: an edited source file is served without a signal; an edit that does not import
keeps the old generation serving and says why in one line; the watcher leaves with the master."""

from __future__ import annotations

import re
import time
from pathlib import Path

import psutil
import pytest

from helpers import LOCAL, ROOT, http_get, server_process, wait_for

APP = '''
import os
VERSION = {version!r}
def app(environ, start_response):
    body = ("%s %d\\n" % (VERSION, os.getpid())).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
{tail}
'''


def _write(tmp_path: Path, version: str, tail: str = "") -> None:
    (tmp_path / "devapp.py").write_text(APP.format(version=version, tail=tail))


def _versions(address: tuple[str, int]) -> set[str]:
    return {_version(address) for _ in range(5)}


def _version(address: tuple[str, int]) -> str:
    status, body = http_get(*address)
    assert status == 200
    return body.split()[0].decode()


@pytest.mark.parametrize("preload", [False, True])
def test_an_edit_is_served_without_a_signal(tmp_path: Path, preload: bool) -> None:
    _write(tmp_path, "v1")
    extra = ("--preload",) if preload else ()
    env = {"PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    with server_process("serve", "devapp:app", "-b", LOCAL, "-w", "2", "--reload", *extra,
                        cwd=tmp_path, env=env) as server:
        address = server.tcp_address()
        server.ready_workers(2)
        watcher = server.wait_line(r"watcher pid (\d+)")
        assert _version(address) == "v1"

        started = time.monotonic()
        _write(tmp_path, "v2")
        wait_for(lambda: _version(address) == "v2", timeout=5, what="the edit to be served")
        took = time.monotonic() - started
        # Workers of the old generation may still answer a connection they were woken for
        # while they drain: wait until every answer is the new one.
        wait_for(lambda: _versions(address) == {"v2"}, timeout=5, what="the old workers to go")
        assert took < 3, f"--reload took {took:.2f} s"

        mark = server.mark()
        _write(tmp_path, "v3", "\nbroken(\n")
        server.wait_line(r"cannot import devapp: SyntaxError", start=mark)
        server.wait_line(r"generation \d+ failed to boot .*keeps serving", start=mark)
        assert {_version(address) for _ in range(5)} == {"v2"}

        _write(tmp_path, "v4")
        wait_for(lambda: _versions(address) == {"v4"}, timeout=5, what="the fixed edit")
        server.stop_ok()
    pid = int(watcher.group(1))
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie",
             what="the watcher to leave with the master")
    assert re.search(r"--reload: devapp.py changed; reloading", server.text())


def test_reload_needs_the_prefork_mode(tmp_path: Path) -> None:
    import subprocess
    import sys

    _write(tmp_path, "v1")
    proc = subprocess.run(
        [sys.executable, "-m", "prefork", "serve", "devapp:app", "-b", LOCAL, "--reload",
         "--mode", "thread"], cwd=tmp_path, capture_output=True, text=True, timeout=30,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "prefork: --reload needs --mode prefork, not thread"
