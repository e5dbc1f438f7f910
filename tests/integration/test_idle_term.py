"""Idle TERM: a pool of 2 idle workers gets SIGTERM and the master exits at once (goal: under
50 ms on an idle machine; scripts/bench_idle_term.py measures it).  The bound here is generous
-- the suite runs on a shared, loaded machine -- but a stop that waits for something (a worker's
poll interval, a graceful timeout, a collection of the master's whole heap at exit) is over it.
"""

from __future__ import annotations

import statistics

import helpers  # noqa: F401 - puts scripts/ on sys.path

BOUND = 0.3  # seconds, the median of 3 stops


def test_idle_pool_stops_on_term_within_the_bound() -> None:
    from bench_idle_term import idle_term  # (scripts/, on sys.path once helpers is imported)

    times = [idle_term() for _ in range(3)]
    assert statistics.median(times) < BOUND, times
