"""Hooks given as settings: called in order, in the right process, around reloads; a
failing ``post_fork`` is a boot failure that ends in exit status 3.

Every server is a real ``python -m prefork serve`` in its own session (see helpers.py);
waits are deadlines on observable things (log lines, pids, bytes received), never sleeps.
"""

from __future__ import annotations

from pathlib import Path

from helpers import (
    LOCAL,
    ROOT,
    pid_of,
    server_process,
    wait_gone,
)

PID_APP = "tests.apps.liveops:PidHello"
HOOKS = "tests.apps.liveops"


ALL_HOOKS = ("on_starting", "pre_fork", "post_fork", "post_worker_init", "worker_exit",
             "on_reload", "on_exit")


def test_hooks_are_called_in_order(tmp_path: Path) -> None:
    hook_log = tmp_path / "hooks.log"
    (tmp_path / "prefork.toml").write_text(
        "".join(f'{hook} = "{HOOKS}:{hook}"\n' for hook in ALL_HOOKS)
    )
    env = {"PYTHONPATH": str(ROOT), "LIVEOPS_HOOK_LOG": str(hook_log)}
    args = ("serve", PID_APP, "-c", "prefork.toml", "-b", LOCAL, "-w", "2")
    with server_process(*args, cwd=tmp_path, env=env) as server:
        address = server.tcp_address()
        first = server.ready_workers(2)
        pid_of(address)
        server.reload(2)
        wait_gone(first, "the first generation")
        server.stop_ok()
        master = server.pid

    records = [line.split() for line in hook_log.read_text().splitlines()]
    names = [r[0] for r in records]
    counts = {hook: names.count(hook) for hook in ALL_HOOKS}
    assert counts == {"on_starting": 1, "pre_fork": 4, "post_fork": 4, "post_worker_init": 4,
                      "worker_exit": 4, "on_reload": 1, "on_exit": 1}, records
    assert records[0] == ["on_starting", str(master)]
    assert records[-1] == ["on_exit", str(master)]
    for age in ("1", "2", "3", "4"):
        pre, post, init, exit_ = (
            next(i for i, r in enumerate(records) if r[0] == hook and r[1] == age)
            for hook in ("pre_fork", "post_fork", "post_worker_init", "worker_exit")
        )
        assert pre < post < init < exit_, (age, records)
        assert records[pre][2] == str(master)  # pre_fork runs in the master ...
        worker_pid = records[post][2]  # ... post_fork and post_worker_init in the worker
        assert worker_pid != str(master) and records[init][2] == worker_pid
        assert records[exit_][2:] == [worker_pid, "0"]  # worker_exit: that pid, status 0
    reload_at = names.index("on_reload")
    assert max(i for i, r in enumerate(records) if r[:2] in (["pre_fork", "1"], ["pre_fork", "2"])
               ) < reload_at
    assert reload_at < min(i for i, r in enumerate(records)
                           if r[:2] in (["pre_fork", "3"], ["pre_fork", "4"]))


def test_failing_post_fork_hook_exits_3_after_bounded_spawns(tmp_path: Path) -> None:
    hook_log = tmp_path / "hooks.log"
    (tmp_path / "prefork.toml").write_text(
        f'pre_fork = "{HOOKS}:pre_fork"\npost_fork = "{HOOKS}:post_fork_always_fails"\n'
        f'on_exit = "{HOOKS}:on_exit"\n'
    )
    env = {"PYTHONPATH": str(ROOT), "LIVEOPS_HOOK_LOG": str(hook_log)}
    args = ("serve", PID_APP, "-c", "prefork.toml", "-b", LOCAL, "-w", "2")
    with server_process(*args, cwd=tmp_path, env=env) as server:
        assert server.wait(timeout=30) == 3
        assert server.wait_line(r"workers fail to boot: 5 in a row")
        assert server.wait_line(r"RuntimeError: post_fork refuses worker")
    names = [line.split()[0] for line in hook_log.read_text().splitlines()]
    # 2 at start, then one probe at a time until 5 failures in a row.
    assert 5 <= names.count("pre_fork") <= 6, names
    assert names[-1] == "on_exit"
