"""How many CPUs this process may really use: the default worker count.

The CPUs it may run on (its affinity mask) can be many more than the CPU time it may use: a
container limited to 2 CPUs (``docker --cpus 2``, a Kubernetes ``limits.cpu``) still sees every
CPU of the host, and a worker per host CPU would then only be throttled.  The limit is the
cgroup's CPU quota -- ``cpu.max`` (cgroup v2) or ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``
(v1) -- of this process's cgroup or any of its ancestors, rounded up.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path


def affinity_cpus() -> int:
    """The number of CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def quota_cpus(proc: Path = Path("/proc/self/cgroup"),
               root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroups, in CPUs (the smallest along the way up), or
    None when there is none (or no cgroup file system to read)."""
    try:  # the kernel prints cgroup names as raw bytes: decoded as file names are
        lines = os.fsdecode(proc.read_bytes()).splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == "":  # v2: one unified hierarchy
            limits += _walk(root, path, _v2_quota)
        elif "cpu" in controllers.split(","):  # v1: the cpu controller's own hierarchy
            for mount in (root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu"):
                if mount.is_dir():
                    limits += _walk(mount, path, _v1_quota)
                    break
    return min(limits) if limits else None


def _walk(mount: Path, path: str, quota: Callable[[Path], float | None]) -> list[float]:
    """The quotas of ``path`` and its ancestors under ``mount`` (a container sees its own
    cgroup as ``/``)."""
    found = []
    parts = [p for p in path.split("/") if p]
    for depth in range(len(parts), -1, -1):
        value = quota(mount.joinpath(*parts[:depth]))
        if value is not None:
            found.append(value)
    return found


def _v2_quota(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return _ratio(quota, period)


def _v1_quota(directory: Path) -> float | None:
    try:
        quota = (directory / "cpu.cfs_quota_us").read_text().strip()
        period = (directory / "cpu.cfs_period_us").read_text().strip()
    except (OSError, ValueError):
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None  # -1 (v1): no limit


def usable_cpus() -> int:
    """The CPUs this process may run on, bounded by its cgroup's CPU quota (rounded up)."""
    cpus = affinity_cpus()
    quota = quota_cpus()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return cpus
