"""The job pool on a real SQLite file with real workers: claims, finishes, retries, and the
master's re-queue of exactly the jobs of a worker that died (prefork/jobs)."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socketserver
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import forked, wait_exit, wait_for
from prefork.jobs import JobServer, connect, enqueue
from prefork.jobs.queue import MIN_SQLITE

pytestmark = pytest.mark.skipif(sqlite3.sqlite_version_info < MIN_SQLITE,
                                reason=f"SQLite {sqlite3.sqlite_version} < 3.35 (no RETURNING)")


class Recording(socketserver.BaseRequestHandler):
    """Records each run in a table of its own (job, attempt, pid, start time), then does what
    the payload says: "ok", "fail" (raise), "hang once" (sleep on the first attempt), "poison"
    (kill its own worker)."""

    def handle(self) -> None:
        job = self.request
        db = self.server.db  # type: ignore[attr-defined]
        db.execute("INSERT INTO runs (job, attempt, pid, at) VALUES (?, ?, ?, ?)",
                   (job.id, job.attempt, os.getpid(), time.time()))
        kind = job.payload["kind"]
        if kind == "fail":
            raise ValueError("told to fail")
        if kind == "hang once" and job.crashes == 0:
            time.sleep(60)
        if kind == "poison":
            os.kill(os.getpid(), signal.SIGKILL)
        job.result = {"done by": os.getpid()}


class Server(JobServer):
    max_crashes = 3
    max_attempts = 3
    retry_base = 0.01
    retry_cap = 0.05


def make_db(path: Path) -> sqlite3.Connection:
    db = connect(path)
    db.execute("CREATE TABLE runs (job INTEGER, attempt INTEGER, pid INTEGER, at REAL)")
    return db


@contextlib.contextmanager
def pool(path: Path, workers: int = 2, server_class: type[Server] = Server) -> Iterator[int]:
    """The pool's master in a forked child (its pid): a process with no other thread, so no
    worker is forked while a thread of the test is inside SQLite (its mutexes would stay
    locked in the child).  TERM at the end; the master must exit 0."""

    def master() -> None:
        server_class(path, Recording, workers=workers).serve_forever()

    with forked(master) as pid:
        try:
            yield pid
        finally:
            os.kill(pid, signal.SIGTERM)
        assert wait_exit(pid) == 0


def job_row(db: sqlite3.Connection, job_id: int) -> dict[str, Any]:
    db.row_factory = sqlite3.Row
    try:
        return dict(db.execute("SELECT * FROM prefork_jobs WHERE id = ?", (job_id,)).fetchone())
    finally:
        db.row_factory = None


def runs(db: sqlite3.Connection, job_id: int) -> list[tuple[int, int, float]]:
    return db.execute("SELECT attempt, pid, at FROM runs WHERE job = ? ORDER BY at",
                      (job_id,)).fetchall()


def test_many_jobs_each_finish_exactly_once(tmp_path: Path) -> None:
    db = make_db(tmp_path / "jobs.db")
    ids = [enqueue(db, {"kind": "ok", "n": i}) for i in range(200)]
    with pool(tmp_path / "jobs.db"):
        wait_for(lambda: db.execute("SELECT count(*) FROM prefork_jobs WHERE state = 'done'")
                 .fetchone()[0] == len(ids), timeout=60, what="every job done")
    per_job = dict(db.execute("SELECT job, count(*) FROM runs GROUP BY job").fetchall())
    assert per_job == {i: 1 for i in ids}
    owners = db.execute("SELECT count(*) FROM prefork_jobs WHERE owner IS NOT NULL").fetchone()
    assert owners == (0,)
    assert os.getpid() not in {pid for (pid,) in db.execute("SELECT pid FROM runs")}


def test_a_worker_killed_mid_job_has_its_job_run_again_at_once(tmp_path: Path) -> None:
    db = make_db(tmp_path / "jobs.db")
    job_id = enqueue(db, {"kind": "hang once"})
    other = enqueue(db, {"kind": "ok"})
    with pool(tmp_path / "jobs.db"):
        first = wait_for(lambda: runs(db, job_id), what="the job started")
        killed_at = time.time()
        os.kill(first[0][1], signal.SIGKILL)
        wait_for(lambda: job_row(db, job_id)["state"] == "done", timeout=30, what="job rerun")
    row = job_row(db, job_id)
    assert row["crashes"] == 1 and row["attempts"] == 2
    assert row["last_error"] == "worker killed by SIGKILL"
    again = runs(db, job_id)
    assert len(again) == 2 and again[1][1] != first[0][1]
    # From the master's re-queue (at the reap) to the job's second start, for the report.
    print(f"kill to re-queue: {(row['requeued_at'] - killed_at) * 1000:.1f} ms, "
          f"re-queue to re-run: {(again[1][2] - row['requeued_at']) * 1000:.1f} ms")
    assert again[1][2] >= row["requeued_at"]
    assert job_row(db, other)["state"] == "done" and len(runs(db, other)) == 1


def test_a_job_that_kills_its_worker_every_time_is_dead_after_max_crashes(tmp_path: Path) -> None:
    db = make_db(tmp_path / "jobs.db")
    job_id = enqueue(db, {"kind": "poison"})
    with pool(tmp_path / "jobs.db"):
        wait_for(lambda: job_row(db, job_id)["state"] == "dead", timeout=30, what="job dead")
        after = enqueue(db, {"kind": "ok"})  # the pool still serves
        wait_for(lambda: job_row(db, after)["state"] == "done", timeout=30, what="next job")
    row = job_row(db, job_id)
    assert row["crashes"] == Server.max_crashes
    assert row["last_error"] == "worker killed by SIGKILL" and row["owner"] is None
    assert len(runs(db, job_id)) == Server.max_crashes


def test_a_failing_job_is_retried_with_back_off_then_failed(tmp_path: Path) -> None:
    db = make_db(tmp_path / "jobs.db")
    job_id = enqueue(db, {"kind": "fail"})
    with pool(tmp_path / "jobs.db"):
        wait_for(lambda: job_row(db, job_id)["state"] == "failed", timeout=30, what="failed")
    row = job_row(db, job_id)
    assert row["attempts"] == Server.max_attempts and row["crashes"] == 0
    assert row["last_error"] == "ValueError: told to fail"
    starts = [at for _, _, at in runs(db, job_id)]
    assert len(starts) == Server.max_attempts
    # Each retry waited at least half its back-off (the jitter's lower bound).
    for n, (a, b) in enumerate(itertools.pairwise(starts), start=1):
        assert b - a >= 0.5 * min(Server.retry_cap, Server.retry_base * 2 ** (n - 1))


def test_a_finish_of_a_job_no_longer_ours_changes_nothing(tmp_path: Path) -> None:
    from prefork.jobs import queue

    db = make_db(tmp_path / "jobs.db")
    job_id = enqueue(db, {"kind": "ok"})
    job = queue.claim(db, "worker a")
    assert job is not None and job.id == job_id
    assert queue.requeue_held(db, "worker a", "worker killed by SIGKILL", True, 3) == 1
    assert queue.claim(db, "worker b") is not None
    assert not queue.finish(db, job, "worker a")  # a's late finish: b owns it now
    assert job_row(db, job_id)["state"] == "running" and job_row(db, job_id)["owner"] == "worker b"


class Sturdy(Server):
    max_crashes = 1000  # the kills below are the test's, not the jobs' fault


def test_random_worker_kills_lose_no_job_and_every_rerun_is_a_recorded_crash(
        tmp_path: Path) -> None:
    import random

    import psutil

    db = make_db(tmp_path / "jobs.db")
    ids = [enqueue(db, {"kind": "ok", "n": i}) for i in range(300)]
    kills = 0
    with pool(tmp_path / "jobs.db", server_class=Sturdy) as master:
        for _ in range(15):
            seen = db.execute("SELECT count(*) FROM runs").fetchone()[0]
            # Kill once some more jobs ran since the last kill: under way, never in a burst.
            wait_for(lambda seen=seen: db.execute("SELECT count(*) FROM runs").fetchone()[0]
                     > seen + 5 or db.execute("SELECT count(*) FROM prefork_jobs WHERE state"
                                              " != 'done'").fetchone()[0] == 0,
                     timeout=30, what="progress")
            workers = psutil.Process(master).children()
            if not workers:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(random.choice(workers).pid, signal.SIGKILL)
                kills += 1
        wait_for(lambda: db.execute("SELECT count(*) FROM prefork_jobs WHERE state = 'done'")
                 .fetchone()[0] == len(ids), timeout=60, what="every job done")
    assert kills > 0
    rows = db.execute("SELECT p.id, p.crashes, p.owner, (SELECT count(*) FROM runs r"
                      " WHERE r.job = p.id) FROM prefork_jobs p").fetchall()
    assert len(rows) == len(ids)
    for job_id, crashes, owner, ran in rows:
        # Ran at least once; each run beyond the first follows a death the master recorded.
        assert owner is None and 1 <= ran <= crashes + 1, (job_id, crashes, ran)
