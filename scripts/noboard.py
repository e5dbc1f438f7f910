"""The HTTP hello with the scoreboard's per-request writes turned into no-ops, for measuring
what the scoreboard costs the request path (docs/benchmarks.md, "Scoreboard overhead"):

    PYTHONPATH=scripts:. python -m prefork serve noboard:Hello -b 127.0.0.1:8150 -w 2

The APP is imported in each worker (and in the import probe), so the patch is applied in each.
"""

from __future__ import annotations

from prefork.core import scoreboard
from workers.http_hello import Hello

__all__ = ["Hello"]


def _skip(self: scoreboard.SlotWriter, now: float) -> None:
    return None


scoreboard.SlotWriter.begin_request = _skip  # type: ignore[method-assign]
scoreboard.SlotWriter.end_request = _skip  # type: ignore[method-assign]
