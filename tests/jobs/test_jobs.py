"""The job pool on a real database (SQLite and PostgreSQL) with real workers: claims,
finishes, retries, and the master's re-queue of exactly the jobs of a worker that died
(prefork/jobs)."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import time

import psutil

from helpers import wait_for
from jobtable import Server, Table, pool


def test_many_jobs_each_finish_exactly_once(db_url: str) -> None:
    table = Table(db_url)
    ids = [table.enqueue({"kind": "ok", "n": i}) for i in range(200)]
    with pool(db_url):
        wait_for(lambda: table.count("done") == len(ids), timeout=60, what="every job done")
    per_job = dict(table.q("SELECT job, count(*) FROM runs GROUP BY job"))
    assert per_job == {i: 1 for i in ids}
    assert table.one("SELECT count(*) FROM prefork_jobs WHERE owner IS NOT NULL") == 0
    assert os.getpid() not in {pid for (pid,) in table.q("SELECT pid FROM runs")}


def test_a_worker_killed_mid_job_has_its_job_run_again_at_once(db_url: str) -> None:
    table = Table(db_url)
    job_id = table.enqueue({"kind": "hang once"})
    other = table.enqueue({"kind": "ok"})
    with pool(db_url):
        first = wait_for(lambda: table.runs(job_id), what="the job started")
        killed_at = time.time()
        os.kill(first[0][1], signal.SIGKILL)
        wait_for(lambda: table.row(job_id)["state"] == "done", timeout=30, what="job rerun")
    row = table.row(job_id)
    assert row["crashes"] == 1 and row["attempts"] == 2
    assert row["last_error"] == "worker killed by SIGKILL"
    again = table.runs(job_id)
    assert len(again) == 2 and again[1][1] != first[0][1]
    # From the master's re-queue (at the reap) to the job's second start, for the report.
    print(f"kill to re-queue: {(row['requeued_at'] - killed_at) * 1000:.1f} ms, "
          f"re-queue to re-run: {(again[1][2] - row['requeued_at']) * 1000:.1f} ms")
    assert again[1][2] >= row["requeued_at"]
    assert table.row(other)["state"] == "done" and len(table.runs(other)) == 1


def test_a_job_that_kills_its_worker_every_time_is_dead_after_max_crashes(db_url: str) -> None:
    table = Table(db_url)
    job_id = table.enqueue({"kind": "poison"})
    with pool(db_url):
        wait_for(lambda: table.row(job_id)["state"] == "dead", timeout=30, what="job dead")
        after = table.enqueue({"kind": "ok"})  # the pool still serves
        wait_for(lambda: table.row(after)["state"] == "done", timeout=30, what="next job")
    row = table.row(job_id)
    assert row["crashes"] == Server.max_crashes
    assert row["last_error"] == "worker killed by SIGKILL" and row["owner"] is None
    assert len(table.runs(job_id)) == Server.max_crashes


def test_a_failing_job_is_retried_with_back_off_then_failed(db_url: str) -> None:
    table = Table(db_url)
    job_id = table.enqueue({"kind": "fail"})
    with pool(db_url):
        wait_for(lambda: table.row(job_id)["state"] == "failed", timeout=30, what="failed")
    row = table.row(job_id)
    assert row["attempts"] == Server.max_attempts and row["crashes"] == 0
    assert row["last_error"] == "ValueError: told to fail"
    starts = [at for _, _, at in table.runs(job_id)]
    assert len(starts) == Server.max_attempts
    # Each retry waited at least half its back-off (the jitter's lower bound).
    for n, (a, b) in enumerate(itertools.pairwise(starts), start=1):
        assert b - a >= 0.5 * min(Server.retry_cap, Server.retry_base * 2 ** (n - 1))


def test_a_finish_of_a_job_no_longer_ours_changes_nothing(db_url: str) -> None:
    table = Table(db_url)
    db = table.backend
    job_id = table.enqueue({"kind": "ok"})
    job = db.claim("m/a", 1, 30.0)
    assert job is not None and job.id == job_id
    assert db.requeue_held("m/a", "worker killed by SIGKILL", True, 3) == 1
    assert db.claim("m/b", 1, 30.0) is not None
    assert not db.finish(job, "m/a")  # a's late finish: b owns it now
    assert db.retry(job, "m/a", "late", 0.0, 3) is None
    row = table.row(job_id)
    assert row["state"] == "running" and row["owner"] == "m/b"


class Sturdy(Server):
    max_crashes = 1000  # the kills below are the test's, not the jobs' fault


def kill_workers_under_load(table: Table, master: int, kills: int, jobs: int) -> int:
    """SIGKILL a random worker ``kills`` times, each once a few more jobs ran; the kills sent."""
    sent = 0
    for _ in range(kills):
        seen = table.one("SELECT count(*) FROM runs")
        # Kill once some more jobs ran since the last kill: under way, never in a burst.
        wait_for(lambda seen=seen: table.one("SELECT count(*) FROM runs") > seen + 3
                 or table.count("done") == jobs, timeout=30, what="progress")
        # Only workers that ran a job (booted): a booting one's death is a boot failure.
        workers = [w for w in psutil.Process(master).children()
                   if table.q("SELECT 1 FROM runs WHERE pid = :pid", pid=w.pid)]
        if not workers:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(random.choice(workers).pid, signal.SIGKILL)
            sent += 1
    return sent


def test_random_worker_kills_lose_no_job_and_every_rerun_is_a_recorded_crash(
        db_url: str) -> None:
    table = Table(db_url)
    ids = [table.enqueue({"kind": "ok", "n": i}) for i in range(300)]
    kills = int(os.environ.get("PREFORK_JOB_KILLS", "15"))
    with pool(db_url, server_class=Sturdy) as master:
        sent = kill_workers_under_load(table, master, kills, len(ids))
        wait_for(lambda: table.count("done") == len(ids), timeout=60, what="every job done")
    assert sent > 0
    rows = table.q("SELECT p.id, p.crashes, p.owner, (SELECT count(*) FROM runs r"
                   " WHERE r.job = p.id) FROM prefork_jobs p")
    assert len(rows) == len(ids)
    for job_id, crashes, owner, ran in rows:
        # Ran at least once; each run beyond the first follows a death the master recorded.
        assert owner is None and 1 <= ran <= crashes + 1, (job_id, crashes, ran)
    assert sum(crashes for _, crashes, _, _ in rows) <= sent
