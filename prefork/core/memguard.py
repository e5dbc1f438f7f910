"""``--max-memory`` inside the worker: a budget the kernel enforces at the allocation.

Why not only the master's look at RSS (master/policies.py).  A request that allocates at
~1 GB/s crosses 100 MB in a tenth of a second; a watcher that reads ``/proc`` every few tens
of milliseconds and then needs a stack dump and a SIGKILL lets it reach 2-4x the limit, and the
client gets a bare disconnect.  The kernel can refuse the allocation itself: ``RLIMIT_DATA``
(Linux >= 4.7) bounds a process's private writable mappings -- the heap, pymalloc's arenas,
malloc's mmaps, NumPy's buffers -- so an allocation past it fails, Python raises MemoryError in
the request that asked, and the request ends through the ordinary error path: a WSGI
application's client gets its 500, a socketserver handler's exception reaches
``handle_error``.

The budget.  When the worker is ready it reads its own ``VmData`` and ``VmRSS`` and sets the
*soft* limit to ``VmData + (FACTOR x max_memory - VmRSS)``: anonymous memory can grow by what
is left to FACTOR x the limit, and resident anonymous memory never exceeds what was mapped, so
the worker's RSS stays under FACTOR x ``max_memory`` (plus the file-backed pages it may page
in, which are few and shared).  The hard limit is left as it was, so the worker can lift the
soft one again: at the first MemoryError prefork's error paths see (:func:`exceeded`), the limit
is lifted -- the traceback, the log line and the 500 need memory, and the request's frames still
hold what it allocated -- and the worker asks the master to recycle it (``REPORT_OVER_MEMORY``):
a process that ran into the wall is replaced, once its replacement is ready, like one past
``max_requests``.

What it does not cover, and the master's look at RSS still does (the 2x / 3 s runaway rule):
shared mappings (``MAP_SHARED``, ``/dev/shm``), which RLIMIT_DATA does not count.  And what a
user should know: rlimits are inherited across ``exec``, so a program the worker runs starts
with the worker's soft limit (it may raise it to the hard one, which is unchanged).
"""

from __future__ import annotations

import logging
import os
import re
import resource
import sys
import threading
from collections.abc import Callable

from prefork.core.contract import PoolServer

log = logging.getLogger("prefork.worker")

FACTOR = 1.5  # the worker's RSS stays under this many times max_memory
MIB = 1024 * 1024
_STATUS_FIELD = r"^%s:\s+(\d+) kB"


def memory_limit(server: PoolServer) -> int:
    """The MB over which a worker of ``server`` is recycled, and its request a runaway past
    the master's margin; the budget armed in the worker is FACTOR times it (0: no limit).  The
    one place that reads ``max_memory``: the worker arms its budget from it, the master's
    policies and enforcer ask it at each look (a reload that changes it applies at once)."""
    return server.max_memory


def _status_mib(text: str, field: str) -> float | None:
    match = re.search(_STATUS_FIELD % field, text, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


def _thread_stack_bytes() -> int:
    """What a new thread's stack maps: threading.stack_size(), else glibc's default (the soft
    RLIMIT_STACK, or 8 MiB when that is unlimited), plus its guard page."""
    size = threading.stack_size()
    if not size:
        soft, _ = resource.getrlimit(resource.RLIMIT_STACK)
        size = 8 * MIB if soft == resource.RLIM_INFINITY else soft
    return size + resource.getpagesize()


class Budget:
    """This process's memory budget.  Methods: arm(limit_mb, on_exceeded) at ready;
    exceeded(exc) from an error path (True when ``exc`` was the budget running out)."""

    def __init__(self) -> None:
        self.armed = False
        self.limit_mb = 0
        self.on_exceeded: Callable[[], None] | None = None

    def arm(self, limit_mb: int, on_exceeded: Callable[[], None], threads: int = 0) -> int | None:
        """Set the soft RLIMIT_DATA for ``limit_mb``; the soft limit in bytes, or None where
        it cannot be set (no /proc, already over the budget, a hard limit below it).
        ``threads``: handler threads still to be started, whose stacks are mapped (and
        counted) in full but resident only as deep as they are used."""
        try:
            with open("/proc/self/status") as f:
                text = f.read()
        except OSError:
            return None
        data, rss = _status_mib(text, "VmData"), _status_mib(text, "VmRSS")
        if data is None or rss is None:
            return None
        room = FACTOR * limit_mb - rss
        if room <= 0:
            log.warning("worker (pid %d) is at %.0f MB when ready, over %g x max_memory "
                        "(%d MB): no memory budget is set, the master's look at RSS applies",
                        os.getpid(), rss, FACTOR, limit_mb)
            return None
        soft = int((data + room) * MIB) + threads * _thread_stack_bytes()
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY and soft > hard:
            return None
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
        self.armed, self.limit_mb, self.on_exceeded = True, limit_mb, on_exceeded
        return soft

    def exceeded(self, exc: BaseException | None) -> bool:
        """Called with the exception an error path caught: if it is the budget running out,
        lift the soft limit, log it and ask for the worker's replacement (once)."""
        if not self.armed or not isinstance(exc, MemoryError):
            return False
        self.armed = False
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        resource.setrlimit(resource.RLIMIT_DATA, (hard, hard))
        log.error("worker (pid %d) a request ran out of the memory budget (%g x max_memory "
                  "%d MB): MemoryError; the worker will be replaced", os.getpid(), FACTOR,
                  self.limit_mb)
        if self.on_exceeded is not None:
            self.on_exceeded()
        return True


BUDGET = Budget()


def check_error() -> None:
    """From an ``except`` block: note the exception being handled (see Budget.exceeded)."""
    if BUDGET.armed:
        BUDGET.exceeded(sys.exc_info()[1])
