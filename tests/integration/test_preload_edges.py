"""--preload edge cases found in review: what a template leaves behind (a subprocess its import
started), a template that does not answer a fork request in time, a WINCH in the middle of a
reload, and an import that hangs in a reload's new generation.

Real ``python -m prefork serve`` processes (helpers.py); waits are deadlines on observable
things (pids, log lines, bytes received), never sleeps.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from helpers import (
    APP_ENV,
    LOCAL,
    http_get,
    kill_pids,
    pid_alive,
    pids_tagged,
    server_process,
    wait_for,
    wait_gone,
    write_pid_app,
)


def test_a_templates_import_time_subprocess_ends_with_the_template(tmp_path: Path) -> None:
    """A subprocess the APP starts at import time belongs to the template that imported it:
    when a reload retires that template (or the master stops), the subprocess goes too, as a
    worker's subprocesses go with the worker's process group."""
    tag = f"helper-of-{tmp_path.name}"
    write_pid_app(tmp_path, "helperapp", f'''
        import subprocess, sys
        _helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                                    "{tag}"])
    ''')
    try:
        with server_process("serve", "helperapp:App", "-b", LOCAL, "-w", "1", "--preload",
                            cwd=tmp_path, env=APP_ENV) as server:
            server.ready_workers(1)
            # The probe's helper is another matter (tests/integration/test_probe_edges.py):
            # only the template's one is a child of the template.
            template = server.templates()[0].pid
            first = wait_for(lambda: {p for p in pids_tagged(tag)
                                      if psutil.Process(p).ppid() == template},
                             what="the template's helper")
            server.reload(2)
            wait_gone({template}, "the first template")
            wait_gone(first, "the retired template's helper", timeout=5)
            second = server.templates()[0].pid
            last = wait_for(lambda: {p for p in pids_tagged(tag)
                                     if psutil.Process(p).ppid() == second},
                            what="the second template's helper")
            server.stop_ok()
            wait_gone(last, "the last template's helper after the stop", timeout=5)
    finally:
        kill_pids(pids_tagged(tag))


def test_a_template_that_answers_a_fork_request_late_leaves_no_unknown_worker(
    tmp_path: Path,
) -> None:
    """A template stopped past FORK_TIMEOUT answers the master's request late.  The master
    must not take that late answer for the reply to its next request: a worker it does not
    know would ignore HUP and serve the old generation's code until the master exits."""
    write_pid_app(tmp_path, "pidapp")
    with server_process("serve", "pidapp:App", "-b", LOCAL, "-w", "2", "--preload",
                        cwd=tmp_path, env=APP_ENV) as server:
        address = server.tcp_address()
        first = server.ready_workers(2)
        template = server.templates()[0].pid
        os.kill(template, signal.SIGSTOP)
        try:
            victim = min(first)
            os.kill(victim, signal.SIGKILL)
            server.wait_line(r"template of generation 1 did not answer", timeout=20)
        finally:
            if pid_alive(template):
                os.kill(template, signal.SIGCONT)
        # The pool is whole again: exactly two workers, every one of them known to the master
        # (the only proof from outside: a reload retires them all).
        wait_for(lambda: len(server.live()) == 2 and server.live() <= server.ready_pids(),
                 timeout=15, what="two ready workers")
        time.sleep(0.5)  # a late worker, if any, would show up as a third child by now
        before = server.live()
        start = server.reload(2)
        new = server.ready_pids(start)
        wait_gone(before, "every worker of generation 1 after the reload", timeout=10)
        # (a template's title is read from its command line, which may lag its fork)
        wait_for(lambda: server.live() == new, what="only the new generation")
        served = {int(http_get(*address)[1]) for _ in range(20)}
        assert served <= new, f"served by {served}, generation 2 is {new}"
        server.stop_ok()


def test_after_a_winch_mid_reload_the_old_template_goes(tmp_path: Path) -> None:
    """WINCH cancels a reload in progress; the pool resumes (TTIN) on the newest generation,
    so the older generation's template, which no worker will ever be forked from again, must
    not keep its copy of the application in memory."""
    write_pid_app(tmp_path, "pidapp")
    with server_process("serve", "pidapp:App", "-b", LOCAL, "-w", "2", "--preload",
                        cwd=tmp_path, env=APP_ENV) as server:
        server.ready_workers(2)
        old_template = server.templates()[0].pid
        start = server.mark()
        server.signal(signal.SIGHUP)
        server.wait_line(r"reload: starting generation 2", start=start)
        server.signal(signal.SIGWINCH)
        server.wait_line(r"stopping all workers", start=start)
        wait_for(lambda: not server.live(), what="the paused pool to empty")
        server.signal(signal.SIGTTIN)
        server.wait_line(r"pool size 2 -> 3", start=start)
        server.ready_workers(3)
        wait_gone({old_template}, "the template of generation 1", timeout=5)
        server.stop_ok()


@pytest.mark.parametrize("preload", [False, True], ids=["per-worker import", "preload"])
def test_a_hup_after_a_reload_whose_import_hangs_serves_the_fixed_code(
    tmp_path: Path, preload: bool,
) -> None:
    marker, hanging = tmp_path / "HANG", tmp_path / "hanging"
    write_pid_app(tmp_path, "hangapp", f'''
        import os, time
        if os.path.exists({str(marker)!r}):
            open({str(hanging)!r}, "w").close()
            time.sleep(3600)  # a database that does not answer, with no timeout
    ''')
    extra = ("--preload",) if preload else ()
    with server_process("serve", "hangapp:App", "-b", LOCAL, "-w", "1", "--boot-timeout", "2",
                        *extra, cwd=tmp_path, env=APP_ENV) as server:
        server.ready_workers(1)
        start = server.mark()
        marker.touch()
        server.signal(signal.SIGHUP)
        server.wait_line(r"reload: starting generation 2", start=start)
        wait_for(hanging.exists, what="the new generation's import to hang")
        marker.unlink()  # the fix, then the operator's HUP
        server.signal(signal.SIGHUP)
        server.wait_line(r"generation \d ready; generation 1 retiring", timeout=25,
                         start=start)
