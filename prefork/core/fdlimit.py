"""The fd limit, and the default ``worker_connections`` sized from it.

Every connection waiting in a worker's multiplexer is an fd of that worker, so the fd limit,
not a fixed number, is what bounds them.  At start the master raises its soft RLIMIT_NOFILE to
the hard one (as nginx users expect; workers inherit it), and a worker whose
``worker_connections`` is 0 (the default) takes the soft limit less a reserve for the
application's own files, the listeners and the worker's pipes.  Near the bound anyway, an
``accept()`` that fails with EMFILE pauses that worker's accepting for a moment (mux.py).
"""

from __future__ import annotations

import resource

RESERVE_MIN = 64  # fds kept for the application, the listeners, the worker's own pipes
RESERVE_SHARE = 8  # ... or one in this many, whichever is more


def raise_soft_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard one if the kernel allows; (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == hard:  # (no kernel allows an infinite one)
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, hard


def connections_bound(configured: int) -> int:
    """``configured``, or for 0 the soft fd limit less the reserve (at least 1)."""
    if configured > 0:
        return configured
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(1, soft - max(RESERVE_MIN, soft // RESERVE_SHARE))
