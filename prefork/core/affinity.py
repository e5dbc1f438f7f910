"""``cpu_affinity``: pin each worker to one CPU, round robin by its scoreboard slot.

Why by slot.  A worker's slot is its place in the scoreboard, ``0 .. max_children - 1``, and a
replacement (a crash, recycling) takes the slot of the worker it replaces: pinning by slot keeps
the pool spread over the CPUs as workers come and go, with no bookkeeping in the master.  With
``workers`` equal to the number of usable CPUs (the default) each CPU gets one worker.

The CPUs are the ones this process may use, read in the worker before it pins itself: they are
the master's (a worker inherits them at fork; the master itself is never pinned), so a
``taskset`` or a container's cpuset around the master is respected.  For CPU-bound handlers this
is what uWSGI's ``cpu-affinity`` offers; docs/deployment.md has the measurement.  It is Linux
only: elsewhere the setting does nothing.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("prefork.worker")


def cpu_for_slot(slot: int, cpus: set[int]) -> int:
    """The CPU of scoreboard slot ``slot``: the usable CPUs in order, round robin."""
    ordered = sorted(cpus)
    return ordered[slot % len(ordered)]


def pin_to_slot_cpu(slot: int) -> int | None:
    """Pin the calling process to the CPU of ``slot``; the CPU, or None where not supported
    (not Linux) or refused (logged)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = cpu_for_slot(slot, os.sched_getaffinity(0))
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        log.warning("worker (pid %d) cannot pin itself to CPU %d: %s", os.getpid(), cpu, exc)
        return None
    log.debug("worker (pid %d) pinned to CPU %d", os.getpid(), cpu)
    return cpu
