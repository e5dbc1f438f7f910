"""An rpcbind of the test's own: a loopback-only network namespace (``ip netns add``) with
rpcbind running there in a private mount namespace, whose /run is its own tmpfs.

Why both namespaces: ``rpcbind -h 127.0.0.1`` aborts (a double free in rpcbind 1.2.6), so
rpcbind gets a network of its own where 127.0.0.1:111 is free; and it takes
/run/rpcbind.lock and /run/rpcbind.sock, which a second rpcbind (another test worker, another
checkout, the host's) would share through the file system.  Everything that talks to this
rpcbind -- the server under test, rpcinfo -- runs inside both namespaces with
``nsenter -t PID -n -m`` (:attr:`Namespace.launcher`): rpcinfo without a host asks rpcbind
over /run/rpcbind.sock.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent.parent
RPCBIND = shutil.which("rpcbind") or next(
    (p for p in ("/usr/sbin/rpcbind", "/sbin/rpcbind") if os.access(p, os.X_OK)), None)
RPCINFO = shutil.which("rpcinfo") or next(
    (p for p in ("/usr/sbin/rpcinfo", "/sbin/rpcinfo") if os.access(p, os.X_OK)), None)
_names = itertools.count()


@dataclass
class Namespace:
    name: str
    rpcbind: subprocess.Popen[bytes]

    @property
    def launcher(self) -> list[str]:
        """The words that run a command inside (the working directory kept)."""
        return ["nsenter", "-t", str(self.rpcbind.pid), "-n", "-m", f"--wd={ROOT}"]

    def run(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.launcher, *argv], capture_output=True, text=True,
                              timeout=timeout)

    def rpcinfo(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert RPCINFO is not None
        return self.run(RPCINFO, *args)

    def mapped(self, prog: int) -> set[tuple[int, str, int]]:
        """(version, proto, port) of ``prog`` in ``rpcinfo -p``."""
        done = self.rpcinfo("-p")
        assert done.returncode == 0, done.stderr
        out = set()
        for line in done.stdout.splitlines()[1:]:
            words = line.split()
            if len(words) >= 4 and words[0] == str(prog):
                out.add((int(words[1]), words[2], int(words[3])))
        return out


def _missing() -> str:
    if os.geteuid() != 0:
        return "needs root (ip netns, mount)"
    for tool in ("ip", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if RPCBIND is None or RPCINFO is None:
        return "rpcbind not installed"
    return ""


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    why = _missing()
    if why:
        pytest.skip(f"no rpcbind namespace: {why}")
    name = f"prefork-rpc-{os.getpid()}-{next(_names)}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"no rpcbind namespace: ip netns add: {made.stderr.strip()}")
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True, capture_output=True)
        assert RPCBIND is not None
        # ip netns exec, unshare and sh each exec the next: the pid is rpcbind's.
        proc = subprocess.Popen(
            ["ip", "netns", "exec", name, "unshare", "--mount", "--propagation", "private",
             "sh", "-c", f"mount -t tmpfs tmpfs /run && mkdir /run/rpcbind && "
             f"exec {RPCBIND} -f -w"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        space = Namespace(name, proc)
        try:
            wait_for(lambda: proc.poll() is not None or space.rpcinfo("-p").returncode == 0,
                     timeout=15, interval=0.05, what="rpcbind answering")
            if proc.poll() is not None:
                output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                pytest.skip(f"no rpcbind namespace: rpcbind exited: {output.strip()}")
            yield space
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
