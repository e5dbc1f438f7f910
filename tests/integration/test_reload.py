"""HUP reloads a running server: repeated under load without failing a request, and
a new generation that cannot boot leaves the old one serving.

Every server is a real ``python -m prefork serve`` in its own session (see helpers.py);
waits are deadlines on observable things (log lines, pids, bytes received), never sleeps.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path

from helpers import (
    LOCAL,
    ROOT,
    http_get,
    pid_of,
    server_process,
    wait_for,
    wait_gone,
)

PID_APP = "tests.apps.liveops:PidHello"
HOOKS = "tests.apps.liveops"


# Test 1: as many HUPs in a row as fit in this budget, at least MIN_RELOADS, at most MAX_RELOADS.
MAX_RELOADS = 50
MIN_RELOADS = 20
RELOAD_BUDGET = 20.0  # seconds
CLIENTS = 3
MAX_REQUESTS_PER_CLIENT = 20_000  # the load is bounded even if the reload loop is not

# -- HUP under load --------------------------------------------------------------------------------


def test_repeated_hup_under_load_fails_no_request() -> None:
    with server_process("serve", PID_APP, "-b", LOCAL, "-w", "2") as server:
        address = server.tcp_address()
        first = server.ready_workers(2)
        stop = threading.Event()
        lock = threading.Lock()
        served: list[int] = []
        failures: list[str] = []

        def client() -> None:
            for _ in range(MAX_REQUESTS_PER_CLIENT):
                if stop.is_set():
                    return
                try:
                    status, body = http_get(*address, timeout=10)
                    pid = int(body)
                except (OSError, ValueError, IndexError) as exc:
                    with lock:
                        failures.append(repr(exc))
                    continue
                with lock:
                    if status == 200:
                        served.append(pid)
                    else:
                        failures.append(f"status {status}")

        threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        reloads = 0
        last_start = 0
        try:
            wait_for(lambda: len(served) >= 10, what="the load to get going")
            deadline = time.monotonic() + RELOAD_BUDGET
            while reloads < MAX_RELOADS and time.monotonic() < deadline:
                before = len(served)
                last_start = server.reload(reloads + 2)
                reloads += 1
                # The load overlaps every reload: requests keep completing across each one.
                wait_for(lambda n=before: len(served) >= n + CLIENTS,  # type: ignore[misc]
                         what="requests served across the reload")
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        assert not any(t.is_alive() for t in threads)
        assert reloads >= MIN_RELOADS, f"only {reloads} reloads in {RELOAD_BUDGET} s"
        assert failures == [], f"{len(failures)} failed of {len(served) + len(failures)}"
        assert len(served) > reloads  # the load ran all along

        # The survivors are exactly the workers that became ready in the last generation.
        last_generation = server.ready_pids(last_start)
        assert len(last_generation) == 2
        wait_for(lambda: server.live() == last_generation, what="only the last generation")
        assert not last_generation & first
        # Requests during the reloads were served by many generations, all of them ours.
        every_ready = server.ready_pids(0)
        assert set(served) <= every_ready
        assert len(set(served)) >= reloads
        for _ in range(6):
            assert pid_of(address) in last_generation
        server.stop_ok()

# -- a new generation that cannot boot -------------------------------------------------------------


def test_generation_that_fails_to_boot_leaves_the_old_one_serving(tmp_path: Path) -> None:
    marker = tmp_path / "fail-now"
    (tmp_path / "prefork.toml").write_text(f'post_fork = "{HOOKS}:post_fork_fails_on_marker"\n')
    env = {"PYTHONPATH": str(ROOT), "LIVEOPS_FAIL_MARKER": str(marker)}
    args = ("serve", PID_APP, "-c", "prefork.toml", "-b", LOCAL, "-w", "2")
    with server_process(*args, cwd=tmp_path, env=env) as server:
        address = server.tcp_address()
        old = server.ready_workers(2)

        marker.touch()
        start = server.mark()
        server.signal(signal.SIGHUP)
        server.wait_line(r"generation 2 failed to boot .*; generation 1 keeps serving",
                         start=start)
        assert server.wait_line(r"post_fork refuses worker", start=start)
        wait_for(lambda: server.live() == old, what="the failed generation to be gone")
        assert {pid_of(address) for _ in range(10)} <= old
        assert not re.search(r"generation 2 ready", server.text())

        # The failure did not count toward stopping the server: fixed, the next HUP works.
        marker.unlink()
        start = server.reload(2)
        new = server.ready_pids(start)
        wait_gone(old, "the first generation to retire")
        assert pid_of(address) in new
        server.stop_ok()
