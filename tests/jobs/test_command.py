"""``prefork enqueue`` and ``prefork jobs`` as real processes on a real SQLite file."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT, clean_env, server_process, wait_for
from prefork.jobs.sqlite import MIN_SQLITE

pytestmark = pytest.mark.skipif(sqlite3.sqlite_version_info < MIN_SQLITE,
                                reason=f"SQLite {sqlite3.sqlite_version} < 3.35 (no RETURNING)")


def prefork(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prefork", *args], env=clean_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def states(path: Path) -> dict[int, tuple[str, str | None, str | None]]:
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
        rows = db.execute("SELECT id, state, last_error, result FROM prefork_jobs").fetchall()
    return {job_id: (state, error, result) for job_id, state, error, result in rows}


def test_enqueue_then_jobs_runs_each_and_a_hung_job_is_killed_and_rerun(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    ids = []
    for n in range(6):
        done = prefork("enqueue", str(db), json.dumps({"n": n}))
        assert done.returncode == 0, done.stderr
        ids.append(int(done.stdout))
    hung = int(prefork("enqueue", str(db), '{"hang": true}').stdout)
    with server_process("jobs", str(db), "tests.apps.jobhandlers:Record", "-w", "2",
                        "--timeout", "1") as server:
        wait_for(lambda: all(s[0] == "done" for s in states(db).values()), timeout=40,
                 what="every job done")
        server.stop_ok()
    found = states(db)
    assert sorted(found) == sorted([*ids, hung])
    for job_id in ids:
        assert json.loads(found[job_id][2] or "null")["n"] == ids.index(job_id)
    assert found[hung][1] == "worker killed by SIGKILL"  # the master's hung-request kill


def test_bad_input_is_one_line_and_status_2(tmp_path: Path) -> None:
    bad_json = prefork("enqueue", str(tmp_path / "jobs.db"), "{nope")
    assert bad_json.returncode == 2 and bad_json.stderr.startswith("prefork: the payload is not")
    bad_handler = prefork("jobs", str(tmp_path / "jobs.db"), "tests.apps.jobhandlers:Nope")
    assert bad_handler.returncode == 2 and bad_handler.stderr.count("\n") == 1


def test_enqueue_options_cancel_and_status(tmp_path: Path) -> None:
    db = str(tmp_path / "jobs.db")
    first = prefork("enqueue", db, '{"n": 1}', "--unique", "k1", "--queue", "mail",
                    "--priority", "5", "--at", "+3600", "--timeout", "2.5")
    assert first.returncode == 0, first.stderr
    again = prefork("enqueue", db, '{"n": 2}', "--unique", "k1")
    assert again.returncode == 1 and "k1" in again.stderr and again.stdout == ""
    other = int(prefork("enqueue", db, '{"n": 3}', "--at", "2030-01-01T00:00:00+00:00").stdout)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        row = conn.execute("SELECT queue, priority, run_at, unique_key, timeout FROM prefork_jobs"
                           " WHERE id = ?", (int(first.stdout),)).fetchone()
        at = conn.execute("SELECT run_at FROM prefork_jobs WHERE id = ?", (other,)).fetchone()
    assert row[0:2] == ("mail", 5) and row[3:] == ("k1", 2.5)
    assert row[2] > time.time() + 3500
    assert at == (1893456000.0,)
    cancelled = prefork("jobs-cancel", db, first.stdout.strip())
    assert cancelled.returncode == 0 and cancelled.stdout.strip() == "cancelled"
    assert prefork("jobs-cancel", db, first.stdout.strip()).returncode == 1  # not queued now
    # The key is free again once its job is no longer queued or running.
    assert prefork("enqueue", db, '{"n": 4}', "--unique", "k1").returncode == 0
    status = prefork("jobs-status", db, "--json")
    assert json.loads(status.stdout)["queues"] == {"mail": {"cancelled": 1},
                                                   "default": {"queued": 2}}
    text = prefork("jobs-status", db).stdout.splitlines()
    assert text[0].split() == ["queue", "queued", "running", "done", "failed", "dead",
                               "cancelled"]
    assert text[1].split() == ["default", "2", "0", "0", "0", "0", "0"]
