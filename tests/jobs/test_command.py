"""``prefork enqueue`` and ``prefork jobs`` as real processes on a real SQLite file."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, clean_env, server_process, wait_for
from prefork.jobs.queue import MIN_SQLITE

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
