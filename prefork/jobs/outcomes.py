"""How a run ends, in the words and delays every job server writes on the row: the back-off
before a retry, the text of an error, the reason a process died.  Shared by the pool
(prefork/jobs/server.py) and the stdlib modes (prefork/jobs/inprocess.py)."""

from __future__ import annotations

import random
import signal


def backoff(attempt: int, base: float, cap: float) -> float:
    """Seconds before retry ``attempt`` (1 for the first run's failure):
    ``min(cap, base * 2**(attempt-1))``, scaled by a random factor in [0.5, 1] (jitter)."""
    return float(min(cap, base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))


def error_text(exc: BaseException | None) -> str:
    """``TypeName: message``, for ``last_error``."""
    return f"{type(exc).__name__}: {exc}"


def exit_reason(status: int, who: str = "worker") -> str:
    """What a process's exit status (as ``os.waitstatus_to_exitcode``) says, for the row."""
    if status < 0:
        try:
            return f"{who} killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"{who} killed by signal {-status}"
    return f"{who} exited with status {status}"
