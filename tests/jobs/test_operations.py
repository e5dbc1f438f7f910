"""The pool's operations on a job pool, as for servers, with no job lost: HUP (the old
generation finishes what it holds and claims nothing more), TERM (held jobs finish; the rest
stay queued), TTIN/TTOU, ``max_requests`` recycling, ``request_timeout`` (a hung job's worker
killed, the job re-queued), ``max_memory`` (the job that ran out retried, its worker replaced),
cancellation of a running job and a per-job timeout -- on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import time

import psutil

from helpers import wait_for
from jobtable import Server, Table, pool

JOBS = 40
STEP = 0.03  # seconds each job sleeps


def each_ran_once(table: Table) -> None:
    assert table.count("done") == table.one("SELECT count(*) FROM prefork_jobs")
    counts = table.q("SELECT p.id, (SELECT count(*) FROM runs r WHERE r.job = p.id)"
                     " FROM prefork_jobs p")
    assert {n for _, n in counts} == {1}, counts
    assert table.one("SELECT sum(crashes) FROM prefork_jobs") == 0


def fill_sleepers(table: Table, count: int = JOBS) -> list[int]:
    return [table.enqueue({"kind": "sleep", "s": STEP, "n": n}) for n in range(count)]


def when_some_ran(table: Table, count: int = 5) -> None:
    wait_for(lambda: table.one("SELECT count(*) FROM runs") >= count, timeout=30,
             what=f"{count} jobs started")


def test_hup_drains_the_old_generation_without_losing_or_repeating_a_job(db_url: str) -> None:
    table = Table(db_url)
    fill_sleepers(table)
    with pool(db_url) as master:
        old = {c.pid for c in psutil.Process(master).children()}
        when_some_ran(table)
        os.kill(master, signal.SIGHUP)
        wait_for(lambda: table.count("done") == JOBS, timeout=60, what="every job done")
        wait_for(lambda: not old & {c.pid for c in psutil.Process(master).children()},
                 timeout=30, what="the old generation gone")
    each_ran_once(table)
    generations = {g for (g,) in table.q("SELECT DISTINCT generation FROM prefork_jobs")}
    assert generations == {1, 2}


def test_term_finishes_held_jobs_and_leaves_the_rest_queued(db_url: str) -> None:
    table = Table(db_url)
    fill_sleepers(table, 200)
    with pool(db_url) as master:
        when_some_ran(table)
        os.kill(master, signal.SIGTERM)
        wait_for(lambda: not psutil.pid_exists(master) or psutil.Process(master).status()
                 == psutil.STATUS_ZOMBIE, timeout=30, what="the master stopped")
    assert table.count("running") == 0
    assert table.count("done") + table.count("queued") == 200
    assert table.count("queued") > 0  # stopped mid-way: the rest waits for the next pool
    with pool(db_url):
        wait_for(lambda: table.count("done") == 200, timeout=60, what="the rest done")
    each_ran_once(table)


def test_ttin_and_ttou_scale_while_jobs_run(db_url: str) -> None:
    table = Table(db_url)
    fill_sleepers(table, 80)
    with pool(db_url) as master:
        when_some_ran(table)
        os.kill(master, signal.SIGTTIN)
        wait_for(lambda: len(psutil.Process(master).children()) == 3, what="3 workers")
        when_some_ran(table, 30)
        os.kill(master, signal.SIGTTOU)
        wait_for(lambda: len(psutil.Process(master).children()) == 2, timeout=30,
                 what="2 workers")  # (two signals sent at once may arrive as one)
        os.kill(master, signal.SIGTTOU)
        wait_for(lambda: len(psutil.Process(master).children()) == 1, timeout=30,
                 what="1 worker")
        wait_for(lambda: table.count("done") == 80, timeout=60, what="every job done")
    each_ran_once(table)


class Recycled(Server):
    max_requests = 5


def test_max_requests_recycles_workers_between_jobs(db_url: str) -> None:
    table = Table(db_url)
    fill_sleepers(table)
    with pool(db_url, server_class=Recycled):
        wait_for(lambda: table.count("done") == JOBS, timeout=60, what="every job done")
    each_ran_once(table)
    # Recycled as servers are: a replacement starts when a worker reaches max_requests, which
    # serves on until the replacement is ready.
    assert table.one("SELECT count(DISTINCT pid) FROM runs") >= 4


class Timed(Server):
    request_timeout = 1.0


def test_request_timeout_kills_a_hung_job_and_reruns_it(db_url: str) -> None:
    table = Table(db_url)
    hung = table.enqueue({"kind": "hang once"})
    others = fill_sleepers(table, 10)
    with pool(db_url, server_class=Timed):
        wait_for(lambda: table.row(hung)["state"] == "done", timeout=30, what="hung job rerun")
        wait_for(lambda: table.count("done") == 11, timeout=30, what="every job done")
    row = table.row(hung)
    assert row["crashes"] == 1 and row["last_error"] == "worker killed by SIGKILL"
    assert all(len(table.runs(job)) == 1 for job in others)


class Budget(Server):
    max_memory = 150  # MB


def test_max_memory_retries_the_job_and_replaces_its_worker(db_url: str) -> None:
    table = Table(db_url)
    hog = table.enqueue({"kind": "hog once", "mb": 1000})
    others = fill_sleepers(table, 10)
    with pool(db_url, server_class=Budget):
        first = wait_for(lambda: table.runs(hog), timeout=30, what="the hog started")
        wait_for(lambda: table.row(hog)["state"] == "done", timeout=30, what="hog rerun")
        wait_for(lambda: table.count("done") == 11, timeout=30, what="every job done")
        wait_for(lambda: not psutil.pid_exists(first[0][1]), timeout=30,
                 what="the hog's worker replaced")
    row = table.row(hog)
    assert row["attempts"] == 2 and row["crashes"] == 0
    assert row["last_error"].startswith("MemoryError")
    assert all(len(table.runs(job)) == 1 for job in others)


def test_cancel_a_running_job_and_a_per_job_timeout(db_url: str) -> None:
    table = Table(db_url)
    long = table.enqueue({"kind": "sleep", "s": 60})
    overdue = table.enqueue({"kind": "hang once"}, timeout=0.5)
    with pool(db_url):
        wait_for(lambda: table.runs(long) and table.runs(overdue), timeout=30,
                 what="both started")
        cancelled_at = time.monotonic()
        assert table.backend.cancel(long) == "running"
        wait_for(lambda: table.row(long)["state"] == "cancelled", timeout=10, what="cancelled")
        took = time.monotonic() - cancelled_at
        wait_for(lambda: table.row(overdue)["state"] == "done", timeout=30, what="rerun")
    row = table.row(long)
    assert row["last_error"] == "cancelled: worker killed by SIGKILL"
    assert len(table.runs(long)) == 1 and took < 5
    row = table.row(overdue)
    assert row["last_error"] == "job timeout: worker killed by SIGKILL" and row["crashes"] == 1
