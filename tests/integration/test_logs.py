"""USR1 reopens the log file (``--log-file``) in the master and in the workers, as
logrotate needs.

Every server is a real ``python -m prefork serve`` in its own session (see helpers.py);
waits are deadlines on observable things (log lines, pids, bytes received), never sleeps.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import signal
from pathlib import Path

from helpers import (
    LOCAL,
    pid_of,
    server_process,
    wait_for,
)

LOGGING_APP = "tests.apps.liveops:LoggingHello"


def _file_match(path: Path, pattern: str) -> re.Match[str] | None:
    with contextlib.suppress(FileNotFoundError):
        return re.search(pattern, path.read_text(), re.MULTILINE)
    return None


def _wait_file(path: Path, pattern: str, timeout: float = 10.0) -> re.Match[str]:
    return wait_for(lambda: _file_match(path, pattern), timeout, what=f"{pattern!r} in {path}")


def test_usr1_reopens_the_log_file_after_rotation(tmp_path: Path) -> None:
    log_file = tmp_path / "prefork.log"
    rotated = tmp_path / "prefork.log.1"
    # --log-root: the app's own logger (liveops, unconfigured) writes to the log file too.
    args = ("serve", LOGGING_APP, "-b", LOCAL, "-w", "1", "--log-file", str(log_file),
            "--log-root")
    with server_process(*args) as server:
        where = _wait_file(log_file, r"serving \S+ on http://([\d.]+):(\d+)/").groups()
        address = (where[0], int(where[1]))
        worker = int(_wait_file(log_file, r"worker 1 \(pid (\d+)\) ready").group(1))
        assert pid_of(address, "/before") == worker
        _wait_file(log_file, rf"\[{worker}\] INFO liveops: request /before served")

        log_file.rename(rotated)  # what logrotate does
        server.signal(signal.SIGUSR1)
        _wait_file(log_file, rf"\[{server.pid}\] INFO prefork.master: .*reopened log files")
        # The worker reopens too: its lines (same worker, no respawn) land in the new file.
        attempt = itertools.count()
        wait_for(
            lambda: pid_of(address, f"/after/{next(attempt)}") == worker
            and _file_match(log_file, rf"\[{worker}\] INFO liveops: request /after/\d+ served"),
            what="a worker line in the reopened file",
        )
        assert server.workers()[0].pid == worker
        server.stop_ok()
        assert _file_match(log_file, rf"master \(pid {server.pid}\) stopped")
        old_text = rotated.read_text()
        assert "serving" in old_text and "request /before served" in old_text
        assert "reopened log files" not in old_text
        assert server.text() == ""  # everything went to the file
