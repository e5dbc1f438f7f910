"""One handler class, tests.apps.jobhandlers:Counted, under the pool and the stdlib's sync,
thread and fork modes (``prefork jobs DB module:Handler --mode ...``), as real processes on
each backend: every job runs exactly once, on the connection of its own thread or process; a
stop (TERM to the server, INT to its process group as a terminal's Ctrl-C) mid-job leaves no
job ``running``; a forked child killed mid-job gets its job re-queued by its parent at once,
the signal on the row."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from helpers import server_process, wait_for
from prefork.jobs import open_backend
from prefork.jobs.backends import Backend

HANDLER = "tests.apps.jobhandlers:Counted"
MODES = ("prefork", "sync", "thread", "fork")


@contextlib.contextmanager
def table(url: str) -> Iterator[Backend]:
    db = open_backend(url)
    try:
        yield db
    finally:
        db.close()


def prepare(url: str, payloads: list[dict[str, Any]]) -> list[int]:
    """The runs table the handler writes to, and the jobs; their ids."""
    with table(url) as db:
        db.execute("CREATE TABLE runs (job INTEGER, pid INTEGER, thread BIGINT, at REAL)", {})
        ids = [db.enqueue(payload) for payload in payloads]
    assert None not in ids
    return [int(job_id) for job_id in ids if job_id is not None]


def states(url: str) -> dict[int, str]:
    with table(url) as db:
        return {int(i): s for i, s in db.execute("SELECT id, state FROM prefork_jobs",
                                                  {}).fetchall()}


def runs(url: str) -> list[tuple[int, int, int]]:
    """(job, pid, thread) of every run begun."""
    with table(url) as db:
        return [(int(j), int(p), int(t))
                for j, p, t in db.execute("SELECT job, pid, thread FROM runs", {}).fetchall()]


def jobs_process(url: str, mode: str, *more: str) -> Any:
    return server_process("jobs", url, HANDLER, "--mode", mode, "-w", "2", *more)


@pytest.mark.parametrize("mode", MODES)
def test_every_job_runs_once_in_each_mode(db_url: str, mode: str) -> None:
    ids = prepare(db_url, [{"n": n} for n in range(40)])
    with jobs_process(db_url, mode) as server:
        wait_for(lambda: set(states(db_url).values()) == {"done"}, timeout=60,
                 what="every job done")
        late = prepare_more(db_url, 5)  # a job enqueued to an idle server starts too
        wait_for(lambda: set(states(db_url).values()) == {"done"}, timeout=30,
                 what="the late jobs done")
        server.stop_ok()
    done = runs(db_url)
    assert sorted(job for job, _, _ in done) == sorted([*ids, *late])  # each exactly once
    pids = {pid for _, pid, _ in done}
    threads = {(pid, thread) for _, pid, thread in done}
    if mode == "sync":
        assert pids == {server.pid} and len(threads) == 1
    elif mode == "thread":
        assert pids == {server.pid} and len(threads) > 1  # a thread per job
    elif mode == "fork":
        assert server.pid not in pids and len(pids) == len(done)  # a child per job
    else:
        assert server.pid not in pids and len(pids) <= 2 + 1  # the pool's 2 workers
    with table(db_url) as db:
        rows = db.execute("SELECT attempts, crashes, owner, result FROM prefork_jobs", {})
        for attempts, crashes, owner, result in rows.fetchall():
            assert (attempts, crashes, owner) == (1, 0, None)
            assert json.loads(result)["pid"] in pids


def prepare_more(url: str, count: int) -> list[int]:
    with table(url) as db:
        ids = [db.enqueue({"late": n}) for n in range(count)]
    return [int(job_id) for job_id in ids if job_id is not None]


@pytest.mark.parametrize("how", ["TERM", "INT"])
@pytest.mark.parametrize("mode", ["sync", "thread", "fork"])
def test_a_stop_mid_job_leaves_no_job_running(db_url: str, mode: str, how: str) -> None:
    ids = prepare(db_url, [{"sleep": 1.0} for _ in range(6)])
    with jobs_process(db_url, mode) as server:
        wait_for(lambda: "running" in states(db_url).values(), timeout=30,
                 what="a job running")
        if how == "TERM":
            server.signal(signal.SIGTERM)
        else:  # a terminal's Ctrl-C: the whole foreground group
            os.killpg(server.pid, signal.SIGINT)
        assert server.wait(30) == 0, server.text()
    found = states(db_url)
    assert sorted(found) == ids
    assert "running" not in found.values(), found
    begun = runs(db_url)
    # The jobs in hand finished; none ran twice; the rest are still queued for the next run.
    assert {job for job, _, _ in begun} == {i for i, s in found.items() if s == "done"}
    assert len(begun) == len({job for job, _, _ in begun}) >= 1


def test_a_forked_child_killed_mid_job_is_requeued_by_its_parent(db_url: str) -> None:
    (job,) = prepare(db_url, [{"sleep": 60}])
    with jobs_process(db_url, "fork") as server:
        child = wait_for(lambda: next((pid for j, pid, _ in runs(db_url) if j == job), None),
                         timeout=30, what="the job's child")
        assert child != server.pid
        killed = time.time()
        os.kill(child, signal.SIGKILL)
        wait_for(lambda: states(db_url)[job] == "done", timeout=30, what="the job run again")
        server.stop_ok()
    with table(db_url) as db:
        row = db.row(job)
    assert row is not None
    assert (row["attempts"], row["crashes"]) == (2, 1)
    assert row["last_error"] == "child killed by SIGKILL"
    # Re-queued by the parent as it reaped the child, not by a lease (30 s).
    assert row["requeued_at"] - killed < 2.0, row["requeued_at"] - killed
    assert [j for j, _, _ in runs(db_url)] == [job, job]


def test_pool_settings_are_refused_outside_the_pool(sqlite_url: str) -> None:
    with jobs_process(sqlite_url, "thread", "--max-requests", "5") as server:
        assert server.wait(30) == 2
        assert "--max-requests: the pool's, not --mode thread's" in server.text()


def test_fork_mode_kills_the_child_of_a_cancelled_or_overdue_job(db_url: str) -> None:
    (cancelled,) = prepare(db_url, [{"sleep": 60}])
    with table(db_url) as db:
        overdue = db.enqueue({"sleep": 60}, timeout=1.0)
    assert overdue is not None
    with jobs_process(db_url, "fork") as server:
        wait_for(lambda: {j for j, _, _ in runs(db_url)} == {cancelled, overdue}, timeout=30,
                 what="both jobs running")
        with table(db_url) as db:
            assert db.cancel(cancelled) == "running"
        wait_for(lambda: states(db_url)[cancelled] == "cancelled", timeout=15,
                 what="the cancelled job's child killed")
        # The overdue job's child is killed and the job runs again (no sleep after a crash).
        wait_for(lambda: states(db_url)[overdue] == "done", timeout=15,
                 what="the overdue job run again")
        server.stop_ok()
    with table(db_url) as db:
        stopped, rerun = db.row(cancelled), db.row(overdue)
    assert stopped is not None and rerun is not None
    assert stopped["last_error"] == "cancelled: child killed by SIGKILL"
    assert (rerun["crashes"], rerun["attempts"]) == (1, 2)
    assert rerun["last_error"] == "job timeout: child killed by SIGKILL"
