"""The pool's size: how many workers a server asks for, and the bounds every change of the size
stays within.  The one part that reads ``workers`` and ``max_children``: the server's
constructor, the supervisor, the adaptive policy, the pool, the command's reload and its
messages ask here.

``workers`` is the size the pool starts with and goes back to at each reload (0: one per usable
CPU, at most ``max_children``; a reload to 0 keeps the size the server started with).  TTIN,
TTOU and ``prefork scale`` change the live size within [1, max_children], the adaptive pool
(``min_spare``/``max_spare``) within [workers, max_children].  The scoreboard has room for
2 x max_children workers: two generations may run side by side during a reload.
"""

from __future__ import annotations

from prefork.core.contract import PoolServer
from prefork.core.cpus import usable_cpus

SMALLEST = 1  # a pool has at least one worker (WINCH pauses it instead)


def default_workers() -> int:
    """The number of CPUs this process may use: the CPUs it may run on, bounded by its
    cgroup's CPU quota (a container's CPU limit), rounded up (``core/cpus.py``)."""
    return usable_cpus()


def one_per_cpu(max_children: int) -> int:
    """The size ``workers = 0`` stands for: one worker per usable CPU, at most
    ``max_children`` (the table shows the same for ``--print-config``)."""
    return min(default_workers(), max_children)


def settle(server: PoolServer, workers: int | None) -> None:
    """Set ``server.workers`` to the size its pool starts with: ``workers`` (the constructor's
    keyword) or, when None, the class's; 0 stands for :func:`one_per_cpu`.  Raises ValueError
    when that is not an integer in [1, max_children]."""
    count = server.workers if workers is None else workers
    if not count:
        count = one_per_cpu(server.max_children)
    if not isinstance(count, int) or isinstance(count, bool) or count < SMALLEST:
        raise ValueError(f"workers must be a positive integer, not {count!r}")
    if count > server.max_children:
        raise ValueError(f"workers ({count}) exceeds max_children ({server.max_children})")
    server.workers = count


def configured(server: PoolServer) -> int:
    """The size the pool starts with and goes back to at a reload (settled by the
    constructor, so never 0)."""
    return server.workers


def reloaded(server: PoolServer, value: int) -> int:
    """What a reload that reads ``value`` from the configuration sets: 0 (one per CPU) keeps
    the size the server started with."""
    return value or server.workers


def within(server: PoolServer, size: int) -> int:
    """``size`` brought within [1, max_children]: what TTIN, TTOU and a scale set."""
    return max(SMALLEST, min(size, server.max_children))


def adaptive_range(server: PoolServer) -> tuple[int, int]:
    """The sizes the adaptive pool moves between: [workers, max_children]."""
    return server.workers, server.max_children


def slots(server: PoolServer) -> int:
    """Workers the scoreboard has room for: two generations side by side in a reload."""
    return 2 * server.max_children


def reported(server: PoolServer) -> dict[str, int]:
    """The bound ``prefork status`` shows beside the live size."""
    return {"max_children": server.max_children}


def bound_name(requested: int, size: int) -> str:
    """The bound that made a scale to ``requested`` set ``size`` instead (the control
    client's note)."""
    return "max_children" if requested > size else "the minimum"
