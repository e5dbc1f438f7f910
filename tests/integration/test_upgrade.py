"""USR2: the master re-executes itself with the listening socket inherited."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import ROOT, http_get, pid_alive, server_process, wait_for

APP = '''
import os
from http.server import BaseHTTPRequestHandler

VERSION = b"{version}"


class Versioned(BaseHTTPRequestHandler):
    def do_GET(self):
        body = VERSION + b" %d" % os.getppid()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass
'''


def write_app(folder: Path, version: str) -> None:
    (folder / "upgraded.py").write_text(APP.replace("{version}", version))


class Load:
    """Client threads sending requests until told to stop; every failure is kept."""

    def __init__(self, address: tuple[str, int], threads: int = 3) -> None:
        self.address = address
        self.done = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        for _ in range(100_000):  # bounded even if nobody stops it
            if self.done.is_set():
                return
            try:
                status, _ = http_get(*self.address)
                with self.lock:
                    self.ok += 1 if status == 200 else 0
                    if status != 200:
                        self.failures.append(f"status {status}")
            except OSError as exc:
                with self.lock:
                    self.failures.append(repr(exc))

    def stop(self) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(30)


def test_usr2_swaps_the_master_under_load(tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    pidfile = tmp_path / "prefork.pid"
    env = {"PYTHONPATH": str(ROOT)}
    with server_process("serve", "upgraded:Versioned", "-b", "127.0.0.1:0", "-w", "2",
                        "--pidfile", str(pidfile), cwd=tmp_path, env=env) as server:
        address = server.tcp_address()
        server.wait_workers(2)
        old_master = server.pid
        assert http_get(*address)[1] == b"v1 %d" % old_master
        write_app(tmp_path, "v2")  # the new master runs the new code
        load = Load(address)
        try:
            wait_for(lambda: load.ok > 50, what="load to start")
            server.signal(signal.SIGUSR2)
            new_master = int(server.wait_line(r"upgrade: started new master \(pid (\d+)\)")
                             .group(1))
            # The old master retires on its own once the new pool is ready.
            assert server.wait(timeout=20) == 0
            served = load.ok
            wait_for(lambda: load.ok > served + 50, what="requests after the handover")
        finally:
            load.stop()
        assert load.failures == []
        assert http_get(*address)[1] == b"v2 %d" % new_master
        assert int(pidfile.read_text()) == new_master
        assert pid_alive(new_master)
        os.kill(new_master, signal.SIGTERM)
        wait_for(lambda: not pid_alive(new_master), what="the new master to stop")
        wait_for(lambda: not pidfile.exists(), what="the pid file to go")


@pytest.mark.parametrize("failure", ["import", "boot"])
def test_failed_new_master_leaves_the_old_one_serving(tmp_path: Path, failure: str) -> None:
    """The new master dies before it is ready: the old one keeps serving, keeps its pid file
    and control socket, and its workers still stop promptly (the shared listener stays
    non-blocking)."""
    write_app(tmp_path, "v1")
    pidfile = tmp_path / "prefork.pid"
    marker = tmp_path / "fail-boot"
    (tmp_path / "hooks.py").write_text(
        "import os\n"
        "def post_fork(server, worker):\n"
        f"    if os.path.exists({str(marker)!r}):\n"
        "        raise RuntimeError('this release cannot boot')\n"
    )
    (tmp_path / "prefork.toml").write_text('post_fork = "hooks:post_fork"\n')
    env = {"PYTHONPATH": str(ROOT)}
    args = ("serve", "upgraded:Versioned", "-b", "127.0.0.1:0", "-w", "4", "-c", "prefork.toml",
            "--pidfile", str(pidfile), "--graceful-timeout", "20")
    with server_process(*args, cwd=tmp_path, env=env) as server:
        address = server.tcp_address()
        workers = server.wait_workers(4)
        if failure == "import":
            (tmp_path / "upgraded.py").write_text("raise ImportError('broken release')\n")
            expected = r"exit status 2"
        else:
            marker.touch()
            expected = r"exit status 3"
        server.signal(signal.SIGUSR2)
        assert server.wait_line(rf"new master \(pid \d+\) failed: {expected}; this one keeps")
        assert http_get(*address)[1] == b"v1 %d" % server.pid
        assert sorted(w.pid for w in server.workers()) == sorted(w.pid for w in workers)
        assert int(pidfile.read_text()) == server.pid
        status = subprocess.run(
            [sys.executable, "-m", "prefork", "status", "--pidfile", str(pidfile), "--json"],
            capture_output=True, text=True, timeout=30, env={**os.environ, **env},
        )
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["master"]["pid"] == server.pid
        for _ in range(40):  # empty accepts in some workers: they must not block in accept()
            assert http_get(*address)[0] == 200
        start = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        assert time.monotonic() - start < 5, "a worker blocked in accept() until the timeout"
        assert not pidfile.exists()


def test_usr2_hands_over_every_listener(tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    path = tmp_path / "web.sock"
    env = {"PYTHONPATH": str(ROOT)}
    with server_process("serve", "upgraded:Versioned", "-b", "127.0.0.1:0", "-b", f"unix:{path}",
                        "-w", "1", cwd=tmp_path, env=env) as server:
        port = int(server.wait_line(r"on http://127\.0\.0\.1:(\d+)/ unix:").group(1))
        server.wait_workers(1)
        server.signal(signal.SIGUSR2)
        new_master = int(server.wait_line(r"started new master \(pid (\d+)\)").group(1))
        assert server.wait(timeout=20) == 0
        assert http_get("127.0.0.1", port)[1] == b"v1 %d" % new_master
        with socket.socket(socket.AF_UNIX) as sock:  # the old master left the file in place
            sock.settimeout(10)
            sock.connect(str(path))
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert sock.makefile("rb").read().endswith(b"v1 %d" % new_master)
        os.kill(new_master, signal.SIGTERM)
        wait_for(lambda: not pid_alive(new_master), what="the new master to stop")
        assert not path.exists()


def test_usr2_with_metrics_and_control(tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    pidfile = tmp_path / "prefork.pid"
    env = {"PYTHONPATH": str(ROOT)}
    with server_process("serve", "upgraded:Versioned", "-b", "127.0.0.1:0", "-w", "1",
                        "--metrics", f"127.0.0.1:{metrics_port}", "--pidfile", str(pidfile),
                        cwd=tmp_path, env=env) as server:
        address = server.tcp_address()
        server.wait_workers(1)
        server.signal(signal.SIGUSR2)
        new_master = int(server.wait_line(r"started new master \(pid (\d+)\)").group(1))
        assert server.wait(timeout=20) == 0
        assert http_get(*address)[1] == b"v1 %d" % new_master
        status, body = http_get("127.0.0.1", metrics_port, "/metrics")
        assert status == 200 and b"prefork_pool_size 1" in body
        status_cmd = subprocess.run(
            [sys.executable, "-m", "prefork", "status", "--pidfile", str(pidfile), "--json"],
            capture_output=True, text=True, timeout=30, env={**os.environ, **env},
        )
        assert json.loads(status_cmd.stdout)["master"]["pid"] == new_master
        os.kill(new_master, signal.SIGTERM)
        wait_for(lambda: not pid_alive(new_master), what="the new master to stop")
