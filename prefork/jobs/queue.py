"""The job table on SQLite and prefork's fixed statements on it.

Invariants, bound to the columns: ``state`` is one of :data:`STATES`; ``owner`` is set exactly
while ``state = 'running'`` (the token of the worker incarnation that claimed it: see
:func:`owner_token`); every change a worker or the master makes to a running job is guarded by
``owner = ? AND state = 'running'``, so a job that is no longer its own is never touched.

One statement claims a job (SQLite >= 3.35: ``UPDATE ... WHERE id IN (SELECT ... LIMIT 1)
RETURNING``), so no two workers can take the same row and no transaction is held across the
claim; WAL and ``busy_timeout`` let the workers and the master write without "database is
locked" errors.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIN_SQLITE = (3, 35)  # UPDATE ... RETURNING
STATES = ("queued", "running", "done", "failed", "dead")
BUSY_TIMEOUT_MS = 10_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS prefork_jobs (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL DEFAULT 'default',
    priority INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'queued',
    payload TEXT NOT NULL,
    run_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    crashes INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    result TEXT,
    owner TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    requeued_at REAL
);
CREATE INDEX IF NOT EXISTS prefork_jobs_next ON prefork_jobs (state, priority DESC, run_at, id);
CREATE INDEX IF NOT EXISTS prefork_jobs_owner ON prefork_jobs (owner) WHERE owner IS NOT NULL;
"""

CLAIM = """
UPDATE prefork_jobs SET state = 'running', owner = :owner, attempts = attempts + 1,
       started_at = :now
 WHERE id IN (SELECT id FROM prefork_jobs WHERE state = 'queued' AND run_at <= :now
              ORDER BY priority DESC, run_at, id LIMIT 1)
RETURNING id, payload, attempts, crashes
"""

FINISH = """
UPDATE prefork_jobs SET state = 'done', owner = NULL, finished_at = :now, result = :result
 WHERE id = :id AND owner = :owner AND state = 'running'
"""

RETRY = """
UPDATE prefork_jobs
   SET state = CASE WHEN attempts >= :max_attempts THEN 'failed' ELSE 'queued' END,
       owner = NULL, run_at = :run_at, last_error = :error,
       finished_at = CASE WHEN attempts >= :max_attempts THEN :now END
 WHERE id = :id AND owner = :owner AND state = 'running'
RETURNING state
"""

# The master's one statement when it reaped a worker: exactly the jobs that worker held.  A
# death (a signal, a failing exit status) counts against the crash budget; a clean exit (a
# stop that interrupted a claim) only puts the job back.
REQUEUE = """
UPDATE prefork_jobs
   SET state = CASE WHEN :crashed AND crashes + 1 >= :max_crashes THEN 'dead' ELSE 'queued' END,
       crashes = crashes + :crashed, owner = NULL, last_error = :reason, run_at = :now,
       requeued_at = :now,
       finished_at = CASE WHEN :crashed AND crashes + 1 >= :max_crashes THEN :now END
 WHERE owner = :owner AND state = 'running'
"""


@dataclass
class Job:
    """One claimed job, the handler's ``self.request``.  A handler may set ``result`` (JSON-able):
    the finish stores it."""

    id: int
    payload: Any
    attempt: int  # 1 for the first run
    crashes: int  # how many workers died running it before
    result: Any = None


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection in autocommit mode (each statement its own transaction), WAL, with
    ``busy_timeout``; creates the table if it is missing."""
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise RuntimeError(f"prefork.jobs needs SQLite >= 3.35 (UPDATE ... RETURNING), "
                           f"this Python has {sqlite3.sqlite_version}")
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.executescript(SCHEMA)
    return db


def enqueue(db: sqlite3.Connection, payload: Any, *, queue: str = "default",
            priority: int = 0, run_at: float | None = None) -> int:
    """Add a job (inside the caller's transaction, if one is open); its id."""
    now = time.time()
    cursor = db.execute(
        "INSERT INTO prefork_jobs (queue, priority, payload, run_at, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (queue, priority, json.dumps(payload), now if run_at is None else run_at, now))
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def claim(db: sqlite3.Connection, owner: str) -> Job | None:
    row = db.execute(CLAIM, {"owner": owner, "now": time.time()}).fetchone()
    if row is None:
        return None
    job_id, payload, attempts, crashes = row
    return Job(job_id, json.loads(payload), attempts, crashes)


def finish(db: sqlite3.Connection, job: Job, owner: str) -> bool:
    """Mark ``job`` done if it is still ``owner``'s; False (nothing changed) otherwise."""
    cursor = db.execute(FINISH, {"now": time.time(), "result": json.dumps(job.result),
                                 "id": job.id, "owner": owner})
    return cursor.rowcount == 1


def retry(db: sqlite3.Connection, job: Job, owner: str, error: str, delay: float,
          max_attempts: int) -> str | None:
    """Queue ``job`` again after ``delay`` seconds, or fail it after ``max_attempts``; the
    new state, or None if the job was no longer ``owner``'s."""
    now = time.time()
    row = db.execute(RETRY, {"max_attempts": max_attempts, "run_at": now + delay,
                             "error": error, "now": now, "id": job.id,
                             "owner": owner}).fetchone()
    return None if row is None else str(row[0])


def requeue_held(db: sqlite3.Connection, owner: str, reason: str, crashed: bool,
                 max_crashes: int) -> int:
    """Put back every job ``owner`` held (the master, after reaping it); how many."""
    cursor = db.execute(REQUEUE, {"crashed": int(crashed), "max_crashes": max_crashes,
                                  "reason": reason, "now": time.time(), "owner": owner})
    return cursor.rowcount
