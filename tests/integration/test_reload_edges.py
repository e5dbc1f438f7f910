"""Reload meeting other operations: WINCH in the middle, a HUP queued behind a failure."""

from __future__ import annotations

import signal
from pathlib import Path

from helpers import ROOT, http_get, pid_alive, server_process, wait_for

APP = '''
from http.server import BaseHTTPRequestHandler
{extra}

class App(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"{version}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass
'''


def write(folder: Path, version: str, extra: str = "") -> None:
    (folder / "edgeapp.py").write_text(APP.replace("{version}", version).replace("{extra}", extra))


def test_winch_during_a_reload_stops_everything_and_hup_resumes(tmp_path: Path) -> None:
    slow_boot = tmp_path / "slow-boot"
    (tmp_path / "hooks.py").write_text(
        "import os, time\n"
        "def post_fork(server, worker):\n"
        f"    while os.path.exists({str(slow_boot)!r}):\n"
        "        time.sleep(0.01)\n"
    )
    (tmp_path / "prefork.toml").write_text('post_fork = "hooks:post_fork"\n')
    write(tmp_path, "v1")
    env = {"PYTHONPATH": str(ROOT)}
    with server_process("serve", "edgeapp:App", "-b", "127.0.0.1:0", "-w", "2", "-c",
                        "prefork.toml", cwd=tmp_path, env=env) as server:
        address = server.tcp_address()
        server.wait_workers(2)
        slow_boot.touch()  # the new generation hangs in post_fork: the reload stays open
        server.signal(signal.SIGHUP)
        server.wait_line(r"reload: starting generation 2")
        wait_for(lambda: len(server.workers()) == 4, what="both generations")
        server.signal(signal.SIGWINCH)
        server.wait_line(r"stopping all workers")
        slow_boot.unlink()
        wait_for(lambda: not server.workers(), timeout=15, what="every worker to stop")
        write(tmp_path, "v3")
        mark = len(server.lines)
        server.signal(signal.SIGHUP)  # not queued behind the abandoned reload: it resumes
        server.wait_line(r"generation 3 ready", start=mark)
        assert http_get(*address)[1] == b"v3"
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


def test_a_hup_queued_behind_a_failing_reload_still_runs(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    (tmp_path / "hooks.py").write_text(
        "import os, time\n"
        "def post_fork(server, worker):\n"
        f"    while os.path.exists({str(gate)!r}):\n"
        "        time.sleep(0.01)\n"
        f"    if os.path.exists({str(gate)!r} + '.fail'):\n"
        f"        os.unlink({str(gate)!r} + '.fail')  # fails once\n"
        "        raise RuntimeError('generation cannot boot')\n"
    )
    (tmp_path / "prefork.toml").write_text('post_fork = "hooks:post_fork"\n')
    write(tmp_path, "v1")
    env = {"PYTHONPATH": str(ROOT)}
    with server_process("serve", "edgeapp:App", "-b", "127.0.0.1:0", "-w", "1", "-c",
                        "prefork.toml", cwd=tmp_path, env=env) as server:
        address = server.tcp_address()
        (first,) = server.wait_workers(1)
        gate.touch()
        Path(f"{gate}.fail").touch()
        server.signal(signal.SIGHUP)  # generation 2 will fail to boot
        server.wait_line(r"reload: starting generation 2")
        write(tmp_path, "v2-fixed")
        server.signal(signal.SIGHUP)  # sent while generation 2 is still booting
        server.wait_line(r"reload queued")
        gate.unlink()
        server.wait_line(r"generation 2 failed to boot")
        server.wait_line(r"generation 2 ready; generation 1 retiring")
        wait_for(lambda: not pid_alive(first.pid), what="generation 1 to finish")
        assert http_get(*address)[1] == b"v2-fixed"
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
