"""What code running in a worker may ask of its pool, through the worker's report pipe.

socketserver's ``shutdown()`` called from a handler stops ``serve_forever()`` under
``ThreadingMixIn``.  In a worker the server object is a copy of the master's: waiting there for
the master's loop to end would hang the worker for ever (the master waits for that worker to
finish its request).  So a worker's ``shutdown()`` asks the master for a graceful stop -- the
same as TERM, but the listening sockets stay open until ``server_close()``, as with
socketserver -- and returns at once: the handler finishes its request, then every worker
drains and exits, and the master's ``serve_forever()`` returns.
"""

from __future__ import annotations

from collections.abc import Callable

from prefork.core.contract import REPORT_SHUTDOWN

# The worker's report (set in the worker only; a child a handler forked -- ForkingMixIn's --
# inherits it, and its report names the worker).
_report: Callable[[int], None] | None = None


def attach(report: Callable[[int], None]) -> None:
    """Called by the worker once it runs: ``report(event)`` writes to the master."""
    global _report
    _report = report


def request_stop() -> bool:
    """In a worker: ask the master to stop the pool gracefully; True.  Elsewhere: False."""
    if _report is None:
        return False
    _report(REPORT_SHUTDOWN)
    return True
