"""What the job pool shows: ``prefork status`` rows carry the job each worker runs, and the
master's ``/metrics`` the job families (counters, the run-time histogram, the queue depth by
state), read from shared memory and one statement of the master's; the worker's process title
shows the job it runs."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import wait_for
from jobtable import Recording, Server, Table, serving
from prefork.core.contract import WorkerInfo
from prefork.ops import titles


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_status_shows_the_running_job_and_metrics_count_the_jobs(db_url: str) -> None:
    table = Table(db_url)
    server = Server(db_url, Recording, workers=1)
    with serving(server):
        ok = [table.enqueue({"kind": "ok"}) for _ in range(5)]
        failing = table.enqueue({"kind": "fail"})
        wait_for(lambda: table.count("done") == 5 and table.count("failed") == 1, timeout=30,
                 what="the first jobs")
        sleeper = table.enqueue({"kind": "sleep", "s": 30})
        wait_for(lambda: table.runs(sleeper), timeout=30, what="the sleeper started")
        worker = WorkerInfo(age=1, slot=0)
        wait_for(lambda: server.worker_status(worker) == {"job": sleeper}, timeout=5,
                 what="the status row's job")
        text = server.metrics_text()
        assert table.backend.cancel(sleeper) == "running"
        wait_for(lambda: table.row(sleeper)["state"] == "cancelled", timeout=10,
                 what="cancelled")
        wait_for(lambda: server.worker_status(WorkerInfo(age=2, slot=0)) == {}, timeout=10,
                 what="no job in the slot once its worker is gone")
    found = samples(text)
    assert found[("prefork_jobs_done_total", ())] == len(ok)
    assert found[("prefork_jobs_retried_total", ())] == Server.max_attempts - 1
    assert found[("prefork_jobs_failed_total", ())] == 1
    assert found[("prefork_jobs_claimed_total", ())] == len(ok) + Server.max_attempts + 1
    assert found[("prefork_jobs_run_seconds_count", ())] == len(ok) + Server.max_attempts
    assert found[("prefork_jobs_queue_depth", (("queue", "default"), ("state", "done")))] == 5
    assert found[("prefork_jobs_queue_depth", (("queue", "default"), ("state", "running")))] \
        == 1
    assert found[("prefork_jobs_statements_total", ())] > 0
    assert failing


def cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode().strip()


@pytest.mark.skipif(not titles.available(), reason="setproctitle is not installed")
def test_the_title_shows_the_job_the_worker_runs_then_idle(db_url: str) -> None:
    table = Table(db_url)
    server = Server(db_url, Recording, workers=1)
    with serving(server):
        first = table.enqueue({"kind": "ok"})  # a job just before: no rate limit hides the next
        sleeper = table.enqueue({"kind": "sleep", "s": 3}, queue="slow")
        runs = wait_for(lambda: table.runs(sleeper), timeout=30, what="the sleeper started")
        pid = runs[0][1]
        assert table.runs(first)[0][1] == pid
        wait_for(lambda: f"job {sleeper} queue=slow attempt 1" in cmdline(pid), timeout=2,
                 what=f"the job in the title (it shows {cmdline(pid)!r})")
        assert cmdline(pid).startswith("prefork: worker 1 ")
        wait_for(lambda: table.row(sleeper)["state"] == "done", timeout=30, what="done")
        wait_for(lambda: " idle " in cmdline(pid), timeout=2,
                 what=f"idle in the title (it shows {cmdline(pid)!r})")
        assert "job" not in cmdline(pid)
