"""--user, --group and --socket-mode, from outside: the handler really runs as the user, with
no other group; the master keeps root; the socket file gets the mode and the owner."""

from __future__ import annotations

import grp
import os
import pwd
import signal
import socket
import stat
import tempfile
from pathlib import Path

import psutil
import pytest

from helpers import ROOT, server_process

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")

USER, GROUP = "nobody", "nogroup"


def _ids() -> tuple[int, int]:
    try:
        return pwd.getpwnam(USER).pw_uid, grp.getgrnam(GROUP).gr_gid
    except KeyError:
        pytest.skip(f"no {USER}/{GROUP} on this host")


def _ask(family: int, address: object) -> list[str]:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(address)
        sock.sendall(b"who\n")
        return sock.makefile("rb").readline().decode().split()


def test_workers_run_as_user_and_group_and_master_keeps_root(tmp_path: Path) -> None:
    uid, gid = _ids()
    path = str(tmp_path / "who.sock")
    tmp_path.chmod(0o755)  # nobody may reach the socket file (the mode is what limits it)
    with server_process("serve", "tests.apps.whoami:Who", "-b", "127.0.0.1:0", "-b",
                        f"unix:{path}", "-w", "2", "--user", USER, "--group", GROUP,
                        "--socket-mode", "660") as server:
        host, port = server.wait_line(r"serving \S+ on (\S+) unix:").group(1).rsplit(":", 1)
        address = (host, int(port))
        workers = server.wait_workers(2)
        for reply in (_ask(socket.AF_INET, address), _ask(socket.AF_UNIX, path)):
            assert reply[:4] == [str(uid), str(uid), str(gid), str(gid)], reply
            assert reply[4:] == [str(gid)], f"supplementary groups not reset: {reply}"
        for proc in workers:
            assert proc.uids().real == uid and proc.gids().real == gid
        master = psutil.Process(server.pid)
        assert master.uids().effective == 0, "the master keeps its privileges"
        info = os.stat(path)
        assert stat.S_IMODE(info.st_mode) == 0o660
        assert (info.st_uid, info.st_gid) == (uid, gid)
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    assert not os.path.exists(path), "the master (root) still removes the socket file"


def test_unknown_user_is_one_line_and_exit_2() -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "prefork", "serve", "tests.apps.whoami:Who", "-b",
         "127.0.0.1:0", "--user", "no-such-user-here"],
        cwd=ROOT, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "prefork: user 'no-such-user-here' does not exist"
    ]


@pytest.mark.parametrize("preload", [False, True], ids=["per-worker import", "preload"])
def test_application_code_never_runs_as_root(preload: bool) -> None:
    """The probe, the workers and a preload template all import the APP as the user."""
    uid, _ = _ids()
    # Outside pytest's tmp_path, whose parents only root may enter.
    with tempfile.TemporaryDirectory(dir="/tmp") as where:
        os.chmod(where, 0o755)
        log = Path(where) / "imports.log"
        log.touch()
        log.chmod(0o666)
        _serve_and_ask(log, uid, ("--preload",) if preload else ())
        importers = [line.split() for line in log.read_text().splitlines()]
    assert len(importers) == (2 if preload else 3)  # the probe, then a template or 2 workers
    assert {who for _, who in importers} == {str(uid)}


def _serve_and_ask(log: Path, uid: int, extra: tuple[str, ...]) -> None:
    with server_process("serve", "tests.apps.whoimports:Who", "-b", "127.0.0.1:0", "-w", "2",
                        "--user", USER, "--group", GROUP, *extra,
                        env={"WHOIMPORTS": str(log)}) as server:
        address = server.tcp_address()
        server.wait_workers(2)
        assert _ask(socket.AF_INET, address) == [str(uid)]
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
