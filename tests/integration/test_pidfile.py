"""The pid file names the master, the control socket goes next to it, and both are
removed on stop.

Every server is a real ``python -m prefork serve`` in its own session (see helpers.py);
waits are deadlines on observable things (log lines, pids, bytes received), never sleeps.
"""

from __future__ import annotations

from pathlib import Path

from helpers import (
    LOCAL,
    server_process,
)

PID_APP = "tests.apps.liveops:PidHello"


def test_pidfile_names_the_master_and_is_removed_on_stop(tmp_path: Path) -> None:
    pidfile = tmp_path / "prefork.pid"
    with server_process("serve", PID_APP, "-b", LOCAL, "-w", "1", "--pidfile",
                        str(pidfile)) as server:
        server.tcp_address()
        server.ready_workers(1)
        assert pidfile.read_text() == f"{server.pid}\n"
        assert Path(f"{pidfile}.ctl").exists()  # the control socket goes next to it
        server.stop_ok()
    assert not pidfile.exists()
    assert not Path(f"{pidfile}.ctl").exists()
    assert not list(tmp_path.glob("*.tmp"))
