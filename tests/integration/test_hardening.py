"""What a stranger, a co-tenant or a typo can do from outside, against the real command.

- a second ``prefork serve --pidfile P`` while a master holds P: refused, P and the master
  untouched; a link planted at P is replaced, its target untouched;
- clients that reset their connections: a line at debug level each, not a traceback;
- a line without end sent to the ready-made workers: refused after a bounded read;
- paths that cannot be written (``--log-file``, ``--pidfile``): one line, exit 2, nothing served.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, http_get, pid_alive, server_process, wait_for

LOCAL = "127.0.0.1:0"
MiB = 1024 * 1024


def _env() -> dict[str, str]:
    """os.environ without anything that would configure prefork behind the test's back."""
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("PREFORK_", "LISTEN_", "_PREFORK_"))
        and key not in ("WEB_CONCURRENCY", "NOTIFY_SOCKET")
    }
    env["PYTHONPATH"] = str(ROOT)
    return env


def _prefork(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prefork", *args], cwd=cwd, env=_env(), capture_output=True,
        text=True, timeout=30, stdin=subprocess.DEVNULL,
    )


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _wait_file(path: Path, pattern: str, timeout: float = 10.0) -> re.Match[str]:
    return wait_for(lambda: re.search(pattern, _text(path), re.MULTILINE), timeout,
                    what=f"{pattern!r} in {path}")


# -- the pid file --------------------------------------------------------------------------------


def test_a_second_start_leaves_the_live_master_and_its_pid_file_alone(tmp_path: Path) -> None:
    pidfile = tmp_path / "app.pid"
    control = Path(f"{pidfile}.ctl")
    with server_process("serve", "-b", LOCAL, "-w", "1", "--pidfile", str(pidfile),
                        env=_env()) as first:
        address = first.tcp_address()
        first.wait_workers(1)
        wait_for(lambda: _text(pidfile) == f"{first.pid}\n" and control.exists(),
                 what="the pid file and the control socket")
        pid_stat, control_stat = pidfile.stat(), control.stat()

        second = _prefork("serve", "-b", LOCAL, "-w", "1", "--pidfile", str(pidfile))

        assert second.returncode == 2
        assert second.stderr.splitlines() == [
            f"prefork: pidfile {pidfile}: held by a running prefork master (pid {first.pid})"
        ]
        # Nothing was rewritten, replaced or removed, and the first master still serves.
        assert _text(pidfile) == f"{first.pid}\n"
        assert (pidfile.stat().st_ino, pidfile.stat().st_mtime_ns) == (
            pid_stat.st_ino, pid_stat.st_mtime_ns)
        assert control.stat().st_ino == control_stat.st_ino
        assert http_get(*address)[0] == 200
        status = _prefork("status", "--pidfile", str(pidfile), "--json")
        assert status.returncode == 0 and f'"pid": {first.pid}' in status.stdout
        first.signal(signal.SIGTERM)
        assert first.wait() == 0
    assert not pidfile.exists()


def test_a_stale_pid_file_is_taken_over(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(gone.stdout)
    assert not pid_alive(dead)
    pidfile = tmp_path / "app.pid"
    pidfile.write_text(f"{dead}\n")
    with server_process("serve", "-b", LOCAL, "-w", "1", "--pidfile", str(pidfile),
                        env=_env()) as server:
        server.wait_workers(1)
        wait_for(lambda: _text(pidfile) == f"{server.pid}\n", what="the pid file to name us")
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    assert not pidfile.exists()


def test_a_link_planted_at_the_pid_file_does_not_redirect_the_write(tmp_path: Path) -> None:
    """Run as root in a 0700, non-sticky directory: the kernel's protected_symlinks does not
    apply here, so only prefork's own care keeps the target intact (see test_pidfile.py)."""
    victim = tmp_path / "victim"
    victim.write_text("do not touch\n")
    pidfile = tmp_path / "app.pid"
    pidfile.symlink_to(victim)
    with server_process("serve", "-b", LOCAL, "-w", "1", "--pidfile", str(pidfile),
                        env=_env()) as server:
        server.wait_workers(1)
        wait_for(lambda: not pidfile.is_symlink() and _text(pidfile) == f"{server.pid}\n",
                 what="the pid file to replace the link")
        assert victim.read_text() == "do not touch\n"
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    assert not os.path.lexists(pidfile)
    assert victim.read_text() == "do not touch\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim"]  # no temporary file left


# -- client resets -------------------------------------------------------------------------------

RESETS = 500
MAX_LOG_GROWTH = 50_000  # bytes, for all the resets together


def _reset(address: tuple[str, int]) -> None:
    """Connect, send part of a line, and close with SO_LINGER 0: the kernel sends RST."""
    sock = socket.create_connection(address, timeout=10)
    sock.sendall(b"part of a line")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _line(address: tuple[str, int], line: bytes) -> bytes:
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(line)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def test_client_resets_do_not_flood_the_log_but_real_errors_keep_their_traceback(
    tmp_path: Path,
) -> None:
    log_file = tmp_path / "prefork.log"
    with server_process("serve", "tests.apps.slow:FailsOnBoom", "-b", LOCAL, "-w", "1",
                        "--log-file", str(log_file), env=_env()) as server:
        host, port = _wait_file(log_file, r"serving \S+ on ([\d.]+):(\d+) ").groups()
        address = (host, int(port))
        _wait_file(log_file, r"worker 1 \(pid \d+\) ready")
        before = log_file.stat().st_size

        for _ in range(RESETS):
            _reset(address)
        # One worker serves its connections in order: once this answer comes, every reset
        # connection before it has been handled (and logged, if it was going to be).
        assert _line(address, b"ping\n") == b"ping\n"

        grown = log_file.stat().st_size - before
        assert grown < MAX_LOG_GROWTH, f"{RESETS} resets added {grown} bytes of log"
        assert "Traceback" not in _text(log_file)

        # A real bug in the handler is still logged in full, at ERROR.
        assert _line(address, b"boom\n") == b""
        _wait_file(log_file, r"RuntimeError: boom on purpose")
        text = _text(log_file)
        assert text.count("Traceback") == 1
        assert re.search(r"ERROR prefork.worker: worker \(pid \d+\) error while handling", text)
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


def test_a_reset_is_one_debug_line(tmp_path: Path) -> None:
    log_file = tmp_path / "prefork.log"
    with server_process("serve", "tests.apps.slow:FailsOnBoom", "-b", LOCAL, "-w", "1",
                        "--log-level", "debug", "--log-file", str(log_file),
                        env=_env()) as server:
        host, port = _wait_file(log_file, r"serving \S+ on ([\d.]+):(\d+) ").groups()
        address = (host, int(port))
        _reset(address)
        assert _line(address, b"ping\n") == b"ping\n"
        line = _wait_file(log_file, r"^.*DEBUG prefork.worker: .*went away.*$").group(0)
        assert "Connection reset by peer" in line
        assert "Traceback" not in _text(log_file)
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


# -- bounded reads in the ready-made workers -----------------------------------------------------

ENDLESS = 100 * MiB  # a "line" this long, without a newline
MAX_GROWTH = 32 * MiB  # what the worker's RSS may grow by while it is sent


@pytest.mark.parametrize(
    ("app", "normal", "answer"),
    [
        ("workers.echo:LineEcho", b"hello\n", b"hello\n"),
        ("prefork.demo:DemoHandler", b"GET / HTTP/1.0\r\n\r\n", b"HTTP/1.0 200 OK"),
        ("workers.http_hello:Hello", b"GET / HTTP/1.0\r\n\r\n", b"HTTP/1.1 200 OK"),
    ],
)
def test_an_endless_line_is_refused_with_bounded_memory(
    app: str, normal: bytes, answer: bytes
) -> None:
    with server_process("serve", app, "-b", LOCAL, "-w", "1", env=_env()) as server:
        address = server.tcp_address()
        [worker] = server.wait_workers(1)
        baseline = worker.memory_info().rss

        sock = socket.create_connection(address, timeout=10)
        chunk, sent = b"x" * MiB, 0
        try:
            while sent < ENDLESS:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        grown = worker.memory_info().rss - baseline  # measured while the client is connected
        closed = False
        try:
            while sock.recv(65536):
                pass
            closed = True  # EOF
        except ConnectionResetError:
            closed = True
        finally:
            sock.close()

        assert grown < MAX_GROWTH, f"the worker grew by {grown / MiB:.1f} MiB"
        assert closed
        assert sent < ENDLESS, "the server kept reading the endless line"
        # The same worker goes on serving.
        assert _line(address, normal).startswith(answer)
        assert [w.pid for w in server.workers()] == [worker.pid]
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


# -- one-line errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "relative", "message"),
    [
        ("--log-file", "missing/x.log", "log file {path}: No such file or directory"),
        ("--log-file", ".", "log file {path}: Is a directory"),
        ("--pidfile", "missing/x.pid", "pidfile {path}: No such file or directory"),
    ],
)
def test_a_path_that_cannot_be_written_is_one_line_before_serving(
    tmp_path: Path, flag: str, relative: str, message: str
) -> None:
    path = tmp_path / relative
    before = sorted(tmp_path.iterdir())
    result = _prefork("serve", "-b", LOCAL, "-w", "1", flag, str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"prefork: {message.format(path=path)}"]
    assert result.stdout == ""
    assert sorted(tmp_path.iterdir()) == before  # nothing created (no temporary file either)
