"""Settings layers end to end: defaults, a TOML file (``-c`` or ``[tool.prefork]`` in
pyproject.toml), the environment, then flags; ``--print-config`` names each source, and
an invalid setting fails with one line before anything is forked.

Every server is a real ``python -m prefork serve`` in its own session (see helpers.py);
waits are deadlines on observable things (log lines, pids, bytes received), never sleeps.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import (
    LOCAL,
    ROOT,
    clean_env,
    pid_of,
    server_process,
)

PID_APP = "tests.apps.liveops:PidHello"
HOOKS = "tests.apps.liveops"


def _prefork(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prefork", *args], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=30, stdin=subprocess.DEVNULL,
    )


def _settings(output: str) -> dict[str, tuple[str, str]]:
    """``--print-config`` lines as {key: (value, source)}."""
    result = {}
    for line in output.splitlines():
        key, _, rest = line.partition(" = ")
        value, _, source = rest.partition("  # ")
        result[key] = (value, source)
    return result


@pytest.mark.parametrize(
    ("env", "flags", "workers"),
    [
        ({}, [], ("3", "file prefork.toml")),
        ({"WEB_CONCURRENCY": "4"}, [], ("4", "env WEB_CONCURRENCY")),
        ({"WEB_CONCURRENCY": "4", "PREFORK_WORKERS": "5"}, [], ("5", "env PREFORK_WORKERS")),
        ({"WEB_CONCURRENCY": "4", "PREFORK_WORKERS": "5"}, ["-w", "6"], ("6", "command line")),
    ],
)
def test_print_config_precedence(
    tmp_path: Path, env: dict[str, str], flags: list[str], workers: tuple[str, str]
) -> None:
    (tmp_path / "prefork.toml").write_text(
        "workers = 3\nmax_requests = 100\ngraceful_timeout = 5\nmax_children = 10\n"
    )
    result = _prefork(
        "serve", "-c", "prefork.toml", "--print-config", "--timeout", "9", *flags,
        cwd=tmp_path, env=clean_env(PREFORK_MAX_REQUESTS="200", **env),
    )
    assert result.returncode == 0, result.stderr
    settings = _settings(result.stdout)
    assert settings["workers"] == workers
    assert settings["max_requests"] == ("200", "env PREFORK_MAX_REQUESTS")  # env beats file
    assert settings["graceful_timeout"] == ("5.0", "file prefork.toml")
    assert settings["max_children"] == ("10", "file prefork.toml")
    assert settings["request_timeout"] == ("9.0", "command line")
    assert settings["max_age"] == ("0.0", "default")
    assert settings["bind"] == ('["127.0.0.1:8000"]', "default")


@pytest.mark.parametrize(
    ("file_text", "env", "names"),
    [
        ("wrokers = 2\n", {}, "wrokers"),
        ("", {"PREFORK_WORKERS": "-1"}, "PREFORK_WORKERS"),
        ("", {"WEB_CONCURRENCY": "many"}, "WEB_CONCURRENCY"),
        ("", {"PREFORK_WROKERS": "2"}, "PREFORK_WROKERS"),
    ],
)
def test_invalid_config_fails_before_any_fork(
    tmp_path: Path, file_text: str, env: dict[str, str], names: str
) -> None:
    hook_log = tmp_path / "hooks.log"
    (tmp_path / "prefork.toml").write_text(
        f'pre_fork = "{HOOKS}:pre_fork"\non_starting = "{HOOKS}:on_starting"\n{file_text}'
    )
    result = _prefork(
        "serve", PID_APP, "-c", "prefork.toml", "-b", LOCAL, "-w", "1", cwd=tmp_path,
        env=clean_env(LIVEOPS_HOOK_LOG=str(hook_log), **env),
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("prefork: ") and names in lines[0], lines
    assert "Traceback" not in result.stderr
    assert not hook_log.exists()  # not even on_starting ran, let alone a fork


def test_pyproject_tool_prefork_table_is_read(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "demo"\n\n[tool.prefork]\n'
        f'app = "{PID_APP}"\nbind = "{LOCAL}"\nworkers = 3\ngraceful-timeout = 4\n'
    )
    result = _prefork("serve", "--print-config", cwd=tmp_path, env=clean_env())
    assert result.returncode == 0, result.stderr
    settings = _settings(result.stdout)
    assert settings["workers"] == ("3", "file pyproject.toml")
    assert settings["graceful_timeout"] == ("4.0", "file pyproject.toml")
    assert settings["app"] == (f'"{PID_APP}"', "file pyproject.toml")

    # And `serve` with no arguments serves what the table says.
    with server_process("serve", cwd=tmp_path, env={"PYTHONPATH": str(ROOT)}) as server:
        address = server.tcp_address()
        pool = server.ready_workers(3)
        assert {pid_of(address) for _ in range(5)} <= pool
        server.stop_ok()
