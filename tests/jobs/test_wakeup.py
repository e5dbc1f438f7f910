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


def switches(pid: int) -> int:
    """Times ``pid`` slept and woke (its voluntary context switches)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches")


def test_a_busy_pool_does_not_wake_its_master_per_commit(db_url: str) -> None:
    """While every worker is busy, each claims again after its job; the master stops watching
    the table until a worker finds nothing and rings it.  (On SQLite each of the ~3 commits
    per job here woke it before, ~500 times for these jobs, ~190 us of its CPU per empty job;
    PostgreSQL's NOTIFY is sent only when a job becomes queued.)"""
    table = Table(db_url)
    count = 600
    with serving(Server(db_url, Recording, workers=2)) as master:
        warm = table.enqueue({"kind": "ok"})
        wait_for(lambda: table.row(warm)["state"] == "done", timeout=30, what="first job")
        before = switches(master)
        table.fill(count)
        wait_for(lambda: table.count("done") == count + 1, timeout=120, what="every job done")
        woke = switches(master) - before
    print(f"{count} jobs (~{3 * count} commits): the master woke {woke} times")
    assert woke < count / 10
