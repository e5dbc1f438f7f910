"""Leases: a master renews the leases of the jobs its live workers hold, so a long job is never
taken back while it runs; a job whose whole master vanished is taken back by another master
once its lease expired, once.  And two masters on one PostgreSQL database (two hosts) run each
job exactly once."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import psutil
import pytest

from helpers import forked, wait_exit, wait_for
from jobtable import Recording, Server, Table, pool


class ShortLease(Server):
    lease = 1.0  # renewed every 1/3 s by a live master


def test_two_masters_on_one_postgresql_database_run_each_of_5000_jobs_once(pg: object) -> None:
    url = pg.create_database()  # type: ignore[attr-defined]
    table = Table(url)
    table.fill(5000)
    start = time.monotonic()
    with pool(url) as one, pool(url) as two:
        wait_for(lambda: table.count("done") == 5000, timeout=120, what="every job done")
        workers = [{c.pid for c in psutil.Process(m).children()} for m in (one, two)]
    elapsed = time.monotonic() - start
    per_job = table.q("SELECT job, count(*) FROM runs GROUP BY job HAVING count(*) <> 1")
    assert per_job == []
    assert table.one("SELECT count(DISTINCT job) FROM runs") == 5000
    ran = {pid for (pid,) in table.q("SELECT DISTINCT pid FROM runs")}
    assert ran & workers[0] and ran & workers[1]  # both masters' workers took jobs
    span = table.q("SELECT min(started_at), max(finished_at) FROM prefork_jobs")[0]
    print(f"5000 jobs, 2 masters x 2 workers: {span[1] - span[0]:.2f} s from first start to "
          f"last finish ({elapsed:.1f} s with the boots)")


def test_a_job_of_a_vanished_master_is_taken_back_once_its_lease_expired(db_url: str) -> None:
    table = Table(db_url)
    job_id = table.enqueue({"kind": "hang once"})

    def doomed() -> None:
        ShortLease(db_url, Recording, workers=1).serve_forever()

    with forked(doomed) as master_a:
        first = wait_for(lambda: table.runs(job_id), timeout=30, what="the job started on A")
        workers = psutil.Process(master_a).children()
        os.kill(master_a, signal.SIGKILL)  # the whole host is gone: its master ...
        for worker in workers:  # ... and its workers, with nobody to reap them
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)
        assert wait_exit(master_a) == -signal.SIGKILL
    assert table.row(job_id)["state"] == "running"  # nobody re-queued it
    gone_at = time.time()
    with pool(db_url, server_class=ShortLease):
        wait_for(lambda: table.row(job_id)["state"] == "done", timeout=30, what="taken back")
    row = table.row(job_id)
    assert row["last_error"].startswith("lease expired: ")
    assert row["crashes"] == 1 and row["attempts"] == 2
    runs = table.runs(job_id)
    assert len(runs) == 2 and runs[1][1] != first[0][1]
    assert row["requeued_at"] >= gone_at - ShortLease.lease  # not before the lease expired


@pytest.mark.parametrize("seconds", [3.0])
def test_a_long_job_of_a_live_master_is_never_taken_back(db_url: str, seconds: float) -> None:
    table = Table(db_url)
    job_id = table.enqueue({"kind": "sleep", "s": seconds})
    with pool(db_url, server_class=ShortLease), pool(db_url, server_class=ShortLease):
        wait_for(lambda: table.row(job_id)["state"] == "done", timeout=30, what="job done")
    row = table.row(job_id)
    assert row["crashes"] == 0 and row["attempts"] == 1 and row["last_error"] is None
    assert len(table.runs(job_id)) == 1
