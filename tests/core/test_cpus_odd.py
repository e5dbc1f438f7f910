"""Odd /proc/self/cgroup contents must never crash the default worker
count (``prefork serve`` without -w, ``--print-config``, ``PreforkTCPServer(...)``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prefork.core import cpus


@pytest.mark.parametrize("content", [
    b"1:cpu:/caf\xe9\n0::/\n",  # a cgroup named in latin-1: the kernel prints the raw bytes
    b"0::/\n\n",  # a blank line
], ids=["non-utf8-cgroup-name", "blank-line"])
def test_odd_proc_cgroup_does_not_raise(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "proc").write_bytes(content)
    (tmp_path / "cg").mkdir()
    assert cpus.quota_cpus(tmp_path / "proc", tmp_path / "cg") is None


def test_prefork_serve_in_a_cgroup_with_a_non_utf8_name() -> None:
    """A real cgroup v1 ``cpu`` group named ``caf\\xe9``: ``prefork serve --print-config``
    must print the settings, not a UnicodeDecodeError traceback."""
    v1 = Path("/sys/fs/cgroup/cpu")
    if not (v1 / "cgroup.procs").exists() or os.geteuid() != 0:
        pytest.skip("needs root and a cgroup v1 cpu hierarchy")
    group = os.path.join(os.fsencode(v1), b"prefork-review-caf\xe9-%d" % os.getpid())
    try:
        os.mkdir(group)
    except OSError:
        pytest.skip("cannot make a cgroup here")
    try:
        script = (f"echo $$ > \"$1/cgroup.procs\"; "
                  f"exec {sys.executable} -m prefork serve --print-config")
        result = subprocess.run(["sh", "-c", script, "_", group], capture_output=True,
                                text=True, timeout=30)
    finally:
        os.rmdir(group)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "workers = " in result.stdout
