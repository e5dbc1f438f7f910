"""The job pool's counters, in shared memory: what the metrics and the tests read.

One row of 64-bit cells per worker slot, written only by the worker of that slot (so no two
processes ever add to the same cell: no lock), and one row for the master (the last).  The
mapping is made before any fork; the master (or a test that made the server before forking its
master) sums the rows.  A worker's row is kept when it exits: counts only grow.

Per row: the statements sent, the claims, the claims that found nothing, the jobs finished,
retried and failed, and the run-time histogram (:data:`BUCKETS`, cumulative as Prometheus
wants them when summed) with its sum in microseconds; and the id of the job it runs now.  The
master's row: statements, jobs re-queued at a reap, of them crashes, jobs rescued after a
lease expired, doorbells rung.
"""

from __future__ import annotations

import bisect
import mmap
import struct

from prefork.jobs.doorbells import MAX_SLOTS

BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0)  # seconds, then +Inf
STATEMENTS, CLAIMS, EMPTY_CLAIMS, DONE, RETRIED, FAILED, RUN_US = range(7)
HISTOGRAM = 7  # the first bucket's cell; len(BUCKETS) + 1 of them
REQUEUED, CRASHED, RESCUED, RINGS = 1, 2, 3, 4  # the master's row (0 is STATEMENTS)
CURRENT = HISTOGRAM + len(BUCKETS) + 1  # the id of the job the worker runs, 0: none
CELLS = CURRENT + 1
CELL = struct.Struct("q")
ROWS = MAX_SLOTS + 1
MASTER = MAX_SLOTS


class Stats:
    """Methods: add(row, cell, n=1), observe(row, seconds), total(cell, workers=True),
    master(cell), histogram() (cumulative counts per bucket, with +Inf, and the sum)."""

    def __init__(self) -> None:
        # Address space only: pages nobody writes stay unmapped.
        self.mem = mmap.mmap(-1, ROWS * CELLS * CELL.size)
        self.cells = memoryview(self.mem).cast("q")

    def add(self, row: int, cell: int, n: int = 1) -> None:
        self.cells[row * CELLS + cell] += n

    def set(self, row: int, cell: int, value: int) -> None:
        self.cells[row * CELLS + cell] = value

    def get(self, row: int, cell: int) -> int:
        return int(self.cells[row * CELLS + cell])

    def observe(self, row: int, seconds: float) -> None:
        """One job's run time."""
        cells, base = self.cells, row * CELLS
        cells[base + HISTOGRAM + bisect.bisect_left(BUCKETS, seconds)] += 1  # first top >= it
        cells[base + RUN_US] += int(seconds * 1e6)

    def total(self, cell: int) -> int:
        """``cell`` summed over the workers' rows."""
        return sum(self.cells[cell:MAX_SLOTS * CELLS:CELLS])

    def master(self, cell: int) -> int:
        return self.get(MASTER, cell)

    def statements(self) -> int:
        """Every statement the pool sent: its workers' and its master's."""
        return self.total(STATEMENTS) + self.master(STATEMENTS)

    def histogram(self) -> tuple[list[int], float]:
        counts = [self.total(HISTOGRAM + i) for i in range(len(BUCKETS) + 1)]
        cumulative, running = [], 0
        for count in counts:
            running += count
            cumulative.append(running)
        return cumulative, self.total(RUN_US) / 1e6
