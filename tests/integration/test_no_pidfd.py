"""Where ``pidfd_open`` fails (an old kernel, valgrind, a container's seccomp profile), the
import probe and the master wait for their children another way: the server starts, serves,
replaces a killed worker and stops; an upgrade (USR2) is refused in one line."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from helpers import LOCAL, ROOT, pid_of, server_process, wait_for, wait_gone

NO_PIDFD = """\
import errno, os

def _refused(pid, flags=0):
    raise OSError(errno.ENOSYS, "pidfd_open refused by the test")

os.pidfd_open = _refused
"""


def test_the_pool_runs_where_pidfd_open_fails(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(NO_PIDFD)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    with server_process("serve", "tests.apps.liveops:PidHello", "-b", LOCAL, "-w", "1",
                        env=env) as server:
        address = server.tcp_address()
        first = pid_of(address)
        began = time.monotonic()
        os.kill(first, signal.SIGKILL)
        wait_gone({first}, "the killed worker")
        second = wait_for(lambda: pid_of(address), what="a replacement worker")
        assert second != first
        assert time.monotonic() - began < 10
        # An upgrade cannot watch its new master: refused in one line, this one serves on.
        server.signal(signal.SIGUSR2)
        server.wait_line(r"ignores SIGUSR2: an upgrade needs pidfd_open", 10)
        assert pid_of(address) == second
        server.stop_ok()
    assert "pidfd_open refused by the test" not in server.text()
