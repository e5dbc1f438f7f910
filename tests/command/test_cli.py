"""Bad input ends in one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from helpers import ROOT
from prefork.command.client import UsageError, format_restarts, format_status, scale_argument


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prefork", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=30, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--mode", "turbo", "-b", "127.0.0.1:0"], "--mode: must be one of"),
        (["serve", "-b", "localhost"], "expected HOST:PORT"),
        (["serve", "-b", "127.0.0.1:99999"], "port must be a number"),
        (["serve", "no_such_module:Handler", "-b", "127.0.0.1:0"], "cannot import no_such_module"),
        (["serve", "workers.echo:Missing", "-b", "127.0.0.1:0"], "has no 'Missing'"),
        (["serve", "tests.apps.slow:NotAHandler", "-b", "127.0.0.1:0"],
         "NotAHandler is an int, neither a socketserver request handler class nor a WSGI"),
        (["serve", "workers.echo", "-b", "127.0.0.1:0"], "has neither 'application' nor 'app'"),
        (["serve", "workers.echo:LineEcho", "-b", "udp://127.0.0.1:0"], "stream handler"),
        (["serve", "-w", "-1", "-b", "127.0.0.1:0"], "--workers: must be an integer >= 0"),
        (["serve", "-w", "100", "-b", "127.0.0.1:0"], "must be <= max_children"),
        (["serve", "--timeout", "-3"], "--timeout: must be a number >= 0"),
        (["serve", "--log-level", "loud"], "--log-level: must be one of"),
        (["serve", "-b", "127.0.0.1:0", "-b", "127.0.0.1:0", "--mode", "sync"],
         "several listeners need --mode prefork"),
        (["serve", "-c", "/nonexistent/prefork.toml"], "nonexistent"),
        (["serve", "-w", "many"], "invalid int value"),
        (["serve", "--no-such-flag"], "unrecognized arguments"),
    ],
)
def test_bad_input_is_one_line_and_status_2(args: list[str], message: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 or "usage:" in proc.stderr


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cli("serve", "-b", f"127.0.0.1:{port}")
    assert proc.returncode == 2
    assert f"cannot bind 127.0.0.1:{port}: Address already in use" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_status_header_lists_restarts_as_words() -> None:
    assert format_restarts({}) == "none"
    assert format_restarts({"reload": 4, "crash": 1}) == "crash=1 reload=4"
    reply = {"master": {"pid": 7, "name": "web", "size": 1, "generation": 2,
                        "restarts": {"crash": 1}}, "workers": []}
    assert format_status(reply).splitlines()[0] == (
        "master pid 7 [web]  size 1  generation 2  restarts crash=1")


def test_status_table_says_how_many_threads_are_busy() -> None:
    worker = {"worker": 1, "pid": 8, "generation": 1, "state": "busy", "requests": 5,
              "request_age": 0.5, "rss_mb": None, "cpu_percent": None, "uptime": 3.0,
              "accept_share": 1.0, "busy_threads": 3, "threads": [{}] * 4}
    reply = {"master": {"pid": 7, "name": "web", "size": 1, "generation": 1, "restarts": {}},
             "workers": [worker]}
    assert format_status(reply).splitlines()[2].split()[3:5] == ["busy", "3/4"]


@pytest.mark.parametrize(
    ("text", "value"), [("3", 3), (" 4 ", 4), ("+2", "+2"), ("-1", "-1"), ("9999999", 9999999)],
)
def test_scale_argument_accepts(text: str, value: int | str) -> None:
    assert scale_argument(text) == value


@pytest.mark.parametrize("text", ["abc", "0", "-", "+", "1.5", "+²", "²", "10000000", ""])
def test_scale_argument_refuses(text: str) -> None:
    with pytest.raises(UsageError, match=r"^scale: "):
        scale_argument(text)
