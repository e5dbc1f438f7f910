"""A throwaway PostgreSQL cluster for the tests: ``initdb`` in a temp dir, the server listening on
a unix socket in that dir only (no TCP), trust authentication, stopped and removed at the end.

One per pytest process (an xdist worker starts its own the first time a test asks for it; the
tests that never ask pay nothing).  As root the server runs as the ``postgres`` user (PostgreSQL
refuses to run as root).  :func:`find_bindir` looks for the server's programs; when there are
none (``scripts/test.sh`` installs the ``postgresql`` package where it can) or the cluster cannot
start, :func:`skip_reason` says so in one line and the PostgreSQL tests are skipped.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

START_TIMEOUT = 60.0


def find_bindir() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl``: on PATH, else Debian's versioned dirs."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


def skip_reason() -> str | None:
    """Why the PostgreSQL tests cannot run here, in one line, or None."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "PostgreSQL tests skipped: psycopg is not installed (pip install 'psycopg[binary]')"
    if find_bindir() is None:
        return "PostgreSQL tests skipped: no initdb/pg_ctl (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "PostgreSQL tests skipped: running as root and there is no postgres user"
    return None


class Cluster:
    """A running cluster.  ``url`` is a postgresql:// URL for its ``postgres`` database;
    :meth:`create_database` makes a fresh database (one per test) and returns its URL."""

    def __init__(self, bindir: Path, base: Path, user: str) -> None:
        self.bindir, self.base, self.user = bindir, base, user
        self.data = base / "data"
        self.socket_dir = base
        self.serial = 0

    def url_for(self, database: str) -> str:
        return f"postgresql:///{database}?host={self.socket_dir}&user={self.user}"

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", self.user, "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *argv], capture_output=True, text=True,
                              timeout=START_TIMEOUT, check=False)

    def start(self) -> None:
        done = self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust",
                         "-U", self.user, "--no-sync", "-E", "UTF8", "--locale", "C")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()[-500:]}")
        options = (f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}' "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=200 -c shared_buffers=32MB")
        done = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                         str(self.base / "log"), "-o", options, "-w", "-t",
                         str(int(START_TIMEOUT)), "start")
        if done.returncode != 0:
            log = (self.base / "log").read_text(errors="replace")[-800:] if (
                self.base / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()} {log}")

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                  "stop")

    def create_database(self, prefix: str = "t") -> str:
        import psycopg

        self.serial += 1
        name = f"{prefix}{os.getpid()}_{self.serial}_{time.monotonic_ns() % 10**6}"
        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """Start a cluster, yield it, stop it and remove its files."""
    bindir = find_bindir()
    assert bindir is not None
    user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    # A short path: a unix socket's path has a 108-byte limit.
    base = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))
    try:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(user)
            os.chown(base, entry.pw_uid, entry.pw_gid)
        os.chmod(base, 0o755)
        found = Cluster(bindir, base, user)
        found.start()
        try:
            yield found
        finally:
            found.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
