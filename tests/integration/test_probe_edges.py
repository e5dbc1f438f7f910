"""The import probe (prefork/command/probe.py) with APPs whose import starts processes: the
probe is a short-lived child, so whatever its import started must neither hold up the start nor
outlive it.

Real ``python -m prefork serve`` processes (helpers.py); waits are deadlines on observable
things, never sleeps.
"""

from __future__ import annotations

from pathlib import Path

import psutil

from helpers import APP_ENV, LOCAL, kill_pids, pids_tagged, server_process, wait_gone, write_pid_app


def test_a_subprocess_started_at_import_does_not_outlive_the_probe(tmp_path: Path) -> None:
    """Each worker's helper goes with the worker's group; the probe's must go with the probe,
    not stay behind, re-parented to init, after the server stopped."""
    tag = f"probe-helper-{tmp_path.name}"
    write_pid_app(tmp_path, "helperapp", f'''
        import subprocess, sys
        _helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                                    "{tag}"])
    ''')
    try:
        with server_process("serve", "helperapp:App", "-b", LOCAL, "-w", "1",
                            cwd=tmp_path, env=APP_ENV) as server:
            server.ready_workers(1)
            server.stop_ok()
            wait_gone(pids_tagged(tag), "every helper (the probe's too) after the stop", timeout=5)
    finally:
        kill_pids(pids_tagged(tag))


def test_a_process_forked_at_import_does_not_hold_up_the_start(tmp_path: Path) -> None:
    """multiprocessing (fork) at import: the forked child inherits the probe's pipe.  The
    master must take the probe's answer when the probe exits, not wait for the pipe's EOF
    (which came only after PROBE_TIMEOUT, 60 s, and then refused the APP)."""
    tag = f"probe-fork-{tmp_path.name}"
    write_pid_app(tmp_path, "forkapp", f'''
        import multiprocessing, sys, time

        def _background():
            sys.argv[:] = ["{tag}"]
            time.sleep(120)

        _child = multiprocessing.get_context("fork").Process(target=_background, daemon=True)
        _child.start()
    ''')
    try:
        with server_process("serve", "forkapp:App", "-b", LOCAL, "-w", "1",
                            cwd=tmp_path, env=APP_ENV) as server:
            server.tcp_address(timeout=15)
            server.ready_workers(1, timeout=15)
            server.stop_ok()
    finally:  # the probe's forked child, if it was left behind
        for proc in psutil.process_iter():
            try:
                if proc.ppid() == 1 and "forkapp:App" in " ".join(proc.cmdline()):
                    proc.kill()
            except psutil.Error:
                continue
