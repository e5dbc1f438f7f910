"""A worker that dies right after it reported ready, again and again, is backed off like a boot
failure, and after ``max_boot_failures`` (5) in a row the command exits with status 3 -- where it
used to replace the workers without end (hundreds of forks a second)."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import ROOT, server_process

# The worker's import starts a thread that kills the process a moment later: after the ready
# report (usually; a death before it is a boot failure, which counts the same).
DYING_APP = """\
import http.server
import os
import threading

threading.Timer(0.3, os._exit, (1,)).start()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(204)
        self.end_headers()
"""

LIMIT = 5  # PoolServer.max_boot_failures
WORKERS = 2


def test_crash_loop_after_ready_exits_3(tmp_path: Path) -> None:
    (tmp_path / "dyingapp.py").write_text(DYING_APP)
    with server_process("serve", "dyingapp:Handler", "--bind", "127.0.0.1:0",
                        "--workers", str(WORKERS), cwd=tmp_path,
                        env={"PYTHONPATH": f"{tmp_path}:{ROOT}"}) as srv:
        assert srv.wait(timeout=45) == 3, srv.text()
        log = srv.text()
    assert "after it reported ready" in log, log
    assert "in a row" in log, log
    forks = len(re.findall(r"worker \d+ \(pid \d+\) ready", log))
    assert forks <= LIMIT + WORKERS, log  # backed off and stopped, not respawned without end
