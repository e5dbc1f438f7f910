"""The job pool's metric families, appended to the master's ``/metrics``: read from the
shared counters (prefork/jobs/stats.py), never from a worker, plus the queue depth by queue and
state, one statement of the master's own (``SELECT queue, state, count(*) ... GROUP BY``) per
scrape.  jobs/s is ``rate(prefork_jobs_done_total[1m])``."""

from __future__ import annotations

from collections.abc import Callable

from prefork.jobs.stats import (
    BUCKETS,
    CLAIMS,
    CRASHED,
    DONE,
    EMPTY_CLAIMS,
    FAILED,
    REQUEUED,
    RESCUED,
    RETRIED,
    RINGS,
    Stats,
)

COUNTERS: tuple[tuple[str, str, Callable[[Stats], int]], ...] = (
    ("claimed", "jobs claimed by the workers", lambda s: s.total(CLAIMS)),
    ("empty_claims", "claims that found no job due", lambda s: s.total(EMPTY_CLAIMS)),
    ("done", "jobs finished (done)", lambda s: s.total(DONE)),
    ("retried", "runs that raised and were queued again", lambda s: s.total(RETRIED)),
    ("failed", "runs that raised for the last time (failed)", lambda s: s.total(FAILED)),
    ("requeued", "jobs re-queued by the master at a worker's reap",
     lambda s: s.master(REQUEUED)),
    ("crashes", "jobs whose worker died running them", lambda s: s.master(CRASHED)),
    ("rescued", "jobs of a vanished master re-queued after their lease expired",
     lambda s: s.master(RESCUED)),
    ("wakeups", "doorbells the master rang", lambda s: s.master(RINGS)),
    ("statements", "statements the pool sent (master and workers)", lambda s: s.statements()),
)


def _label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(stats: Stats, depth: dict[str, dict[str, int]] | None) -> str:
    """The Prometheus text; ``depth`` (queue -> state -> count) None when the table could not
    be read (the family is then left out)."""
    out = []
    for name, help_text, read in COUNTERS:
        out += [f"# HELP prefork_jobs_{name}_total {help_text.capitalize()}.",
                f"# TYPE prefork_jobs_{name}_total counter",
                f"prefork_jobs_{name}_total {read(stats)}"]
    cumulative, total = stats.histogram()
    out += ["# HELP prefork_jobs_run_seconds How long the runs took (done, retried, failed).",
            "# TYPE prefork_jobs_run_seconds histogram"]
    for top, count in zip((*BUCKETS, float("inf")), cumulative, strict=True):
        bound = "+Inf" if top == float("inf") else repr(top)
        out.append(f'prefork_jobs_run_seconds_bucket{{le="{bound}"}} {count}')
    out += [f"prefork_jobs_run_seconds_sum {total}",
            f"prefork_jobs_run_seconds_count {cumulative[-1]}"]
    if depth is not None:
        out += ["# HELP prefork_jobs_queue_depth Jobs in the table by queue and state.",
                "# TYPE prefork_jobs_queue_depth gauge"]
        for queue in sorted(depth):
            out.extend(f'prefork_jobs_queue_depth{{queue="{_label(queue)}",state="{state}"}} '
                       f'{count}' for state, count in sorted(depth[queue].items()))
    return "\n".join(out) + "\n"
