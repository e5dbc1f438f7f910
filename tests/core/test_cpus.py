"""The default worker count honours a container's CPU limit (cgroup v1 and v2 quota files, in
fake trees laid out as the kernel lays them out)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prefork.core import cpus


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v2_quota_of_the_own_cgroup(tmp_path: Path) -> None:
    write(tmp_path / "proc", "0::/kubepods/pod1/app\n")
    write(tmp_path / "cg/kubepods/pod1/app/cpu.max", "150000 100000\n")
    assert cpus.quota_cpus(tmp_path / "proc", tmp_path / "cg") == 1.5


def test_v2_the_smallest_quota_on_the_way_up_wins(tmp_path: Path) -> None:
    write(tmp_path / "proc", "0::/a/b\n")
    write(tmp_path / "cg/a/b/cpu.max", "max 100000\n")
    write(tmp_path / "cg/a/cpu.max", "300000 100000\n")
    write(tmp_path / "cg/cpu.max", "800000 100000\n")
    assert cpus.quota_cpus(tmp_path / "proc", tmp_path / "cg") == 3.0


def test_v2_without_a_quota(tmp_path: Path) -> None:
    write(tmp_path / "proc", "0::/\n")
    write(tmp_path / "cg/cpu.max", "max 100000\n")
    assert cpus.quota_cpus(tmp_path / "proc", tmp_path / "cg") is None


def test_v1_quota_in_the_cpu_hierarchy(tmp_path: Path) -> None:
    write(tmp_path / "proc", "4:memory:/docker/x\n3:cpu,cpuacct:/docker/x\n")
    write(tmp_path / "cg/cpu,cpuacct/docker/x/cpu.cfs_quota_us", "200000\n")
    write(tmp_path / "cg/cpu,cpuacct/docker/x/cpu.cfs_period_us", "100000\n")
    assert cpus.quota_cpus(tmp_path / "proc", tmp_path / "cg") == 2.0


def test_v1_unlimited_is_minus_one(tmp_path: Path) -> None:
    write(tmp_path / "proc", "3:cpu:/\n")
    write(tmp_path / "cg/cpu/cpu.cfs_quota_us", "-1\n")
    write(tmp_path / "cg/cpu/cpu.cfs_period_us", "100000\n")
    assert cpus.quota_cpus(tmp_path / "proc", tmp_path / "cg") is None


def test_no_cgroup_file_system(tmp_path: Path) -> None:
    assert cpus.quota_cpus(tmp_path / "missing", tmp_path / "cg") is None


@pytest.mark.parametrize(("affinity", "quota", "expected"),
                         [(8, 1.5, 2), (8, 0.2, 1), (2, 4.0, 2), (4, None, 4)])
def test_usable_cpus_is_the_affinity_bounded_by_the_quota_rounded_up(
    monkeypatch: pytest.MonkeyPatch, affinity: int, quota: float | None, expected: int
) -> None:
    monkeypatch.setattr(cpus, "affinity_cpus", lambda: affinity)
    monkeypatch.setattr(cpus, "quota_cpus", lambda: quota)
    assert cpus.usable_cpus() == expected


UNIFIED = Path("/sys/fs/cgroup/cgroup.subtree_control")  # cgroup v2: controllers for children


def _limited_cgroup(tmp_name: str) -> tuple[Path, Path] | None:
    """A real cgroup limited to half a CPU (its directory, the file to move a process in), or
    None where this machine cannot make one (not root, no cpu controller)."""
    v1 = Path("/sys/fs/cgroup/cpu")
    if (v1 / "cpu.cfs_quota_us").exists():
        group = v1 / tmp_name
        quota, text = group / "cpu.cfs_quota_us", "50000"
    elif UNIFIED.exists() and "cpu" in UNIFIED.read_text().split():
        group = Path("/sys/fs/cgroup") / tmp_name
        quota, text = group / "cpu.max", "50000 100000"
    else:
        return None
    try:
        group.mkdir()
        quota.write_text(text)
    except OSError:
        if group.exists():
            group.rmdir()
        return None
    return group, group / "cgroup.procs"


def test_a_real_cpu_limit_gives_one_worker() -> None:
    """``prefork serve`` in a cgroup limited to half a CPU defaults to one worker."""
    made = _limited_cgroup(f"prefork-test-{os.getpid()}")
    if made is None:
        pytest.skip("cannot make a CPU-limited cgroup here (needs root and a cpu controller)")
    group, procs = made
    try:
        script = (f"echo $$ > {procs}; exec {sys.executable} -m prefork serve --print-config")
        out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30,
                             check=True).stdout
    finally:
        group.rmdir()
    assert "workers = 1 " in out, out
