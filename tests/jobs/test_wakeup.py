"""No polling where the database can tell: an idle pool sends (almost) no statements, and a
new job starts within milliseconds, because the master watches the table (inotify on SQLite's
WAL, LISTEN on PostgreSQL) and rings an idle worker's doorbell (prefork/jobs/keeper.py)."""

from __future__ import annotations

import statistics
import time

from helpers import wait_for
from jobtable import Recording, Server, Table, serving
from prefork.jobs.stats import EMPTY_CLAIMS, STATEMENTS

IDLE_WINDOW = 6.0


def test_an_idle_pool_sends_at_most_one_statement_a_second(db_url: str) -> None:
    table = Table(db_url)
    server = Server(db_url, Recording, workers=2)
    with serving(server):
        job_id = table.enqueue({"kind": "ok"})  # the pool is up and has served
        wait_for(lambda: table.row(job_id)["state"] == "done", timeout=30, what="first job")
        # Both workers booted and waiting (slots 0 and 1), not only the one that ran the job.
        wait_for(lambda: all(server.stats.get(slot, EMPTY_CLAIMS) for slot in (0, 1)),
                 timeout=30, what="each worker found the queue empty")
        before, start = server.stats.statements(), time.monotonic()
        master_before = server.stats.master(STATEMENTS)
        deadline = start + IDLE_WINDOW
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(left)  # the measurement window itself
        sent = server.stats.statements() - before
        by_master = server.stats.master(STATEMENTS) - master_before
        elapsed = time.monotonic() - start
    print(f"idle pool, 2 workers: {sent} statements in {elapsed:.1f} s ({by_master} by the "
          "master)")
    assert sent <= elapsed  # at most one a second, master and workers together


def test_a_new_job_starts_within_20_ms(db_url: str) -> None:
    table = Table(db_url)
    delays = []
    with serving(Server(db_url, Recording, workers=2)):
        warm = table.enqueue({"kind": "ok"})
        wait_for(lambda: table.row(warm)["state"] == "done", timeout=30, what="first job")
        for _ in range(20):
            time.sleep(0.05)  # the pool idle again: every worker waiting on its doorbell
            sent = time.time()
            job_id = table.enqueue({"kind": "ok"})
            wait_for(lambda job_id=job_id: table.runs(job_id), timeout=10, what="job started")
            delays.append((table.runs(job_id)[0][2] - sent) * 1000)
    median = statistics.median(delays)
    print(f"enqueue to start: median {median:.1f} ms, max {max(delays):.1f} ms")
    assert median < 20
