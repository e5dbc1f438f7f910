"""What the operator is told is true (issue 11, points 9-11), run as a user would: ``prefork
reload`` exits with the reload's outcome, ``prefork stop --wait`` returns after the exit, bad
control input exits 2 in one line, ``scale`` says when it clamped, process titles follow the
pool, the status header and the restarts metric count what they say.

Servers are real ``python -m prefork serve`` processes; the commands are real ``python -m
prefork ...`` processes; waits are deadlines on observable things.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import LOCAL, ROOT, ServerProcess, free_port, server_process, wait_for, wait_gone
from prefork.ops import titles

APP_SOURCE = '''
import os, socketserver

class App(socketserver.StreamRequestHandler):
    def handle(self):
        self.rfile.readline()
        self.wfile.write(b"{version} %d\\n" % os.getpid())
{tail}
'''


def _write_app(where: Path, version: str, tail: str = "") -> None:
    (where / "truthapp.py").write_text(APP_SOURCE.format(version=version, tail=tail))


@contextlib.contextmanager
def _app_server(tmp_path: Path, *extra: str) -> Iterator[tuple[ServerProcess, str]]:
    """``truthapp:App`` (rewritable in ``tmp_path``) with a pid file; yields (server, pidfile)."""
    _write_app(tmp_path, "v1")
    pidfile = str(tmp_path / "prefork.pid")
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "PYTHONDONTWRITEBYTECODE": "1"}
    with server_process("serve", "truthapp:App", "-b", LOCAL, "--pidfile", pidfile, *extra,
                        cwd=tmp_path, env=env) as server:
        wait_for(lambda: os.path.exists(pidfile + ".ctl"), what="the control socket")
        yield server, pidfile


def _prefork(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "prefork", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _answer(address: tuple[str, int]) -> tuple[str, int]:
    with socket.create_connection(address, timeout=15) as sock:
        sock.sendall(b"hi\n")
        version, pid = sock.makefile("rb").readline().split()
    return version.decode(), int(pid)


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode().strip()


# -- point 9: reload, stop --wait, bad input, clamping ------------------------------------------

def test_reload_exits_with_the_outcome(tmp_path: Path) -> None:
    with _app_server(tmp_path, "-w", "2") as (server, pidfile):
        address = server.tcp_address()
        first = server.ready_workers(2)

        _write_app(tmp_path, "v2", tail="\nraise RuntimeError('broken release')\n")
        failed = _prefork("reload", "--pidfile", pidfile)
        assert failed.returncode == 1, failed
        assert failed.stderr.count("\n") == 1, failed.stderr
        assert re.fullmatch(r"prefork: reload: generation 2 failed to boot \(worker \d+, pid \d+: "
                            r"exit status \d+\); generation 1 keeps serving\n", failed.stderr)
        assert server.live() >= first
        assert {_answer(address)[0] for _ in range(4)} == {"v1"}  # any worker: the old code

        _write_app(tmp_path, "v2")
        start = server.mark()
        done = _prefork("reload", "--pidfile", pidfile)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "reload: ok, generation 2 serving (pool size 2)\n"
        # Exit 0 came after the new generation was ready: it serves the next request.
        new = server.ready_pids(start)
        assert len(new) == 2
        for _ in range(4):
            version, pid = _answer(address)
            assert (version, pid in new) == ("v2", True)
        server.stop_ok()


def test_reload_with_a_bad_config_exits_non_zero(tmp_path: Path) -> None:
    config = tmp_path / "prefork.toml"
    config.write_text("workers = 1\n")
    with _app_server(tmp_path, "-c", str(config)) as (server, pidfile):
        server.ready_workers(1)
        config.write_text("workers = 'many'\n")
        failed = _prefork("reload", "--pidfile", pidfile)
        assert failed.returncode == 1
        assert failed.stderr.startswith("prefork: reload: reload failed: ")
        assert failed.stderr.endswith("; generation 1 keeps serving\n")
        assert failed.stderr.count("\n") == 1
        # The master's log says it in one line too, without a traceback.
        assert server.wait_line(r"reload refused: configuration: .*workers")
        assert "Traceback" not in server.text()
        server.stop_ok()


def test_stop_wait_returns_after_the_master_exited(tmp_path: Path) -> None:
    with _app_server(tmp_path, "-w", "2") as (server, pidfile):
        server.ready_workers(2)
        stopped = _prefork("stop", "--wait", "--pidfile", pidfile)
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout == f"stop: ok, the master (pid {server.pid}) exited\n"
        # Already gone when the command returned: no waiting here.
        assert server.popen.poll() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("scale", "abc"), "prefork: scale: expected N, +N or -N, not 'abc'\n"),
        (("scale", "0"), "prefork: scale: the pool size must be at least 1, not 0\n"),
        (("scale", "+x"), "prefork: scale: expected N, +N or -N, not '+x'\n"),
        (("scale", "9" * 5000), None),
        (("status",), "prefork: status: give --control PATH or --pidfile PATH to find the "
                      "master\n"),
        (("reload", "--timeout", "0"), "prefork: reload: --timeout must be positive\n"),
    ],
)
def test_bad_control_input_exits_2_with_one_line(
    tmp_path: Path, args: tuple[str, ...], message: str | None,
) -> None:
    where = () if args == ("status",) else ("--pidfile", str(tmp_path / "none.pid"))
    proc = _prefork(*args, *where)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.count("\n") == 1 and len(proc.stderr) < 200, proc.stderr
    if message is not None:
        assert proc.stderr == message


def test_scale_past_max_children_says_what_it_set(tmp_path: Path) -> None:
    with _app_server(tmp_path, "-w", "1", "--max-children", "3") as (server, pidfile):
        server.ready_workers(1)
        scaled = _prefork("scale", "1000", "--pidfile", pidfile)
        assert scaled.returncode == 0
        assert scaled.stdout == "scale: ok (pool size 3, generation 1)\n"
        assert scaled.stderr == "prefork: note: asked for 1000 workers, set 3 (max_children)\n"
        server.ready_workers(3)
        down = _prefork("scale", "-5", "--pidfile", pidfile)
        assert down.stderr == "prefork: note: asked for -2 workers, set 1 (the minimum)\n"
        server.ready_workers(1)
        server.stop_ok()


# -- point 10: titles -----------------------------------------------------------------------

@pytest.mark.skipif(not titles.available(), reason="setproctitle is not installed")
def test_titles_show_the_last_state_after_a_burst_and_a_pause(tmp_path: Path) -> None:
    name = f"truth{os.getpid()}"
    with _app_server(tmp_path, "-w", "1", "--name", name) as (server, _):
        address = server.tcp_address()
        (worker,) = server.ready_workers(1)
        for _ in range(20):  # a burst: titles are rate-limited to one per 0.5 s meanwhile
            _answer(address)
        wait_for(lambda: _cmdline(worker) == f"prefork: worker 1 [{name}] idle 20 req",
                 timeout=3, what="the idle title to show the 20 requests")

        host, port = server.tcp_address()
        server.signal(signal.SIGWINCH)
        wait_gone({worker}, "the paused worker")
        wait_for(lambda: _cmdline(server.pid) == f"prefork: master [{name}] paused {host}:{port}",
                 what="the master's title to say paused")
        server.signal(signal.SIGTTIN)  # resumes, one worker more: 2
        server.ready_workers(2)
        wait_for(lambda: _cmdline(server.pid) == f"prefork: master [{name}] 2 workers "
                 f"{host}:{port}", what="the master's title to count 2 workers")
        server.stop_ok()


# -- point 11: restarts and counts ------------------------------------------------------------

def test_restarts_count_replaced_workers_and_read_as_words(tmp_path: Path) -> None:
    port = free_port()
    with _app_server(tmp_path, "-w", "3", "--metrics", f"127.0.0.1:{port}") as (server,
                                                                                pidfile):
        server.ready_workers(3)
        for generation in (2, 3):
            done = _prefork("reload", "--pidfile", pidfile)
            assert done.returncode == 0, done.stderr
            assert f"generation {generation} serving" in done.stdout
        victim = min(server.ready_workers(3))
        os.kill(victim, signal.SIGKILL)
        server.wait_line(rf"\(pid {victim}\) died")
        server.ready_workers(3)

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            metrics = reply.read().decode()
        assert 'prefork_restarts_total{reason="reload"} 6' in metrics  # 2 reloads x 3 workers
        assert 'prefork_restarts_total{reason="crash"} 1' in metrics
        table = _prefork("status", "--pidfile", pidfile)
        header = table.stdout.splitlines()[0]
        assert header.endswith("  restarts crash=1 reload=6"), header
        server.stop_ok()


def test_one_worker_is_one_worker(tmp_path: Path) -> None:
    with _app_server(tmp_path, "-w", "1", "--log-level", "debug") as (server, _):
        server.ready_workers(1)
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        text = server.text()
        assert "1 worker, pid" in text and "starting 1 worker\n" in text + "\n"
        assert not re.search(r"\b1 workers\b", text), text
