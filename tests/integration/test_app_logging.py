"""Logging that fits the application's (issue 18 point 6): prefork's handler sits on its own
``prefork`` logger, so an app that configures logging sees each of its tracebacks once, not
once more through a handler on the root logger; ``--log-root`` asks for the root logger;
``critical`` is a level; ``--capture-output`` puts the workers' stdout and stderr on the log
file, and USR1 moves them with it; a boot failure names the file and line the import failed
at."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from helpers import LOCAL, ROOT, clean_env, free_port, http_get, server_process, wait_for

APP = "tests.apps.logs_own:application"


def test_an_app_that_configures_logging_sees_each_traceback_once() -> None:
    with server_process("serve", APP, "-b", LOCAL, "-w", "1") as server:
        address = server.tcp_address()
        server.wait_workers(1)
        start = server.mark()
        assert http_get(*address, "/logged?one")[0] == 200
        assert http_get(*address, "/raise?two")[0] == 500
        assert http_get(*address, "/plain?end")[0] == 200
        server.wait_line(r"plain warning end", 10, start)  # everything before it is in
        lines = server.lines[start:]
        assert sum("ValueError: handled one" in line for line in lines) == 1, lines
        assert sum(line.startswith("MYAPP ERROR the app caught one") for line in lines) == 1
        assert sum("RuntimeError: unhandled two" in line for line in lines) == 1, lines
        assert any("ERROR prefork.wsgi" in line for line in lines)  # prefork's, its format
        # A logger nobody configured is not prefork's to format (Python's last resort prints).
        assert not any("WARNING plain:" in line for line in lines), lines


def test_log_root_puts_the_handler_on_the_root_logger() -> None:
    with server_process("serve", APP, "-b", LOCAL, "-w", "1", "--log-root") as server:
        address = server.tcp_address()
        server.wait_workers(1)
        assert http_get(*address, "/plain?rooted")[0] == 200
        server.wait_line(r"\[\d+\] WARNING plain: plain warning rooted")


def test_critical_is_a_level(tmp_path: Path) -> None:
    log = tmp_path / "prefork.log"
    port = free_port()
    with server_process("serve", APP, "-b", f"127.0.0.1:{port}", "-w", "1", "--log-file",
                        str(log), env={"PREFORK_LOG_LEVEL": "critical"}) as server:
        wait_for(lambda: _get_or_none(port), 15, what="the server answering")
        assert http_get("127.0.0.1", port, "/raise?quiet")[0] == 500
        server.stop_ok()
    assert "INFO" not in log.read_text() and "ERROR prefork" not in log.read_text()


def _get_or_none(port: int) -> int | None:
    try:
        return http_get("127.0.0.1", port, "/plain?up")[0]
    except OSError:
        return None


def test_capture_output_sends_stdout_and_stderr_to_the_log_file(tmp_path: Path) -> None:
    log = tmp_path / "prefork.log"
    port = free_port()
    with server_process("serve", APP, "-b", f"127.0.0.1:{port}", "-w", "1", "--log-file",
                        str(log), "--capture-output") as server:
        wait_for(lambda: _get_or_none(port), 15, what="the server answering")
        assert http_get("127.0.0.1", port, "/print?first")[0] == 200
        for line in ("printed first", "wsgi.errors first", "fd2 first"):
            wait_for(lambda line=line: line in log.read_text(), 10, what=line)  # type: ignore[misc]
        log.rename(tmp_path / "prefork.log.1")  # logrotate, then USR1
        server.signal(signal.SIGUSR1)
        wait_for(lambda: log.exists() and "reopened" in log.read_text(), 10,
                 what="the master reopening")

        def moved() -> bool:  # the worker reopens a moment after the master
            http_get("127.0.0.1", port, "/print?second")
            return "fd2 second" in log.read_text() and "printed second" in log.read_text()

        wait_for(moved, 10, interval=0.1, what="output on the new file")
        server.stop_ok()
    assert "first" in (tmp_path / "prefork.log.1").read_text()


def test_capture_output_needs_a_log_file() -> None:
    out = subprocess.run([sys.executable, "-m", "prefork", "serve", APP, "--capture-output",
                          "--check-config"], capture_output=True, text=True, cwd=ROOT,
                         env=clean_env(), timeout=60)
    assert out.returncode == 2 and "--capture-output needs --log-file" in out.stderr


def test_a_boot_failure_names_the_file_and_line_of_the_import_error() -> None:
    out = subprocess.run([sys.executable, "-m", "prefork", "serve", "tests.apps.deep_import",
                          "-b", LOCAL], capture_output=True, text=True, cwd=ROOT,
                         env=clean_env(), timeout=60)
    assert out.returncode == 2, out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert "KeyError: 'b'" in line and f"tests{os.sep}apps{os.sep}deep_config.py:7" in line, line
