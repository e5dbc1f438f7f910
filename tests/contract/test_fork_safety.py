"""A pool whose process has other threads -- one inside a log call, one inside an import most
of the time -- forks workers that boot, every time (prefork/core/forksafe.py), and says in one
line what it did.  On the main of before, each such worker hung for ever at its first log line
or its import of the module (no answer, no log line)."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from helpers import Proc, clean_env, wait_for

SERVED = Path(__file__).with_name("threads_served.py")
SLOW_MODULE = "import time\ntime.sleep(0.02)\n"
FORKS = 12  # workers forked while the thread holds its lock most of the time
DEADLINE = 60.0


def ask(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"pid?\n")
        return int(sock.makefile("rb").readline())


@pytest.mark.parametrize("preload", [False, True], ids=["fork", "preload"])
@pytest.mark.parametrize("kind", ["log", "import"])
def test_workers_boot_while_another_thread_holds_a_lock(kind: str, preload: bool,
                                                        tmp_path: Path) -> None:
    (tmp_path / "slowmod.py").write_text(SLOW_MODULE)
    args = [sys.executable, str(SERVED), kind, str(tmp_path)] + (["preload"] if preload else [])
    proc = Proc(args, env=clean_env(), name=f"threads-{kind}")
    try:
        port = int(proc.wait_line(r"port (\d+)", timeout=15).group(1))
        seen: set[int] = set()
        deadline = time.monotonic() + DEADLINE
        # Each worker serves one request (max_requests = 1), then its replacement is forked; a
        # request may still reach the one leaving.  A replacement that hangs at boot is never
        # ready, so the old one goes on answering and no new pid comes.
        while len(seen) < FORKS:
            assert time.monotonic() < deadline, f"{len(seen)} workers booted\n{proc.tail(20)}"
            pid = ask(port)
            if pid not in seen:
                seen.add(pid)
                wait_for(lambda: proc.text().count("booted") > len(seen), timeout=10,
                         what=f"worker {len(seen) + 1} to boot")
        text = proc.text()
    finally:
        proc.kill()
    assert text.count("booted") >= FORKS, text
    said = [line for line in text.splitlines() if "other thread" in line]
    assert len(said) == 1 and "forks with" in said[0], text
