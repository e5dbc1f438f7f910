"""The SQLite backend: the stdlib's ``sqlite3``, WAL, ``busy_timeout``; a file path is all it
needs.

One statement claims a job (SQLite >= 3.35: ``UPDATE ... WHERE id IN (SELECT ... LIMIT 1)
RETURNING``): SQLite runs one writer at a time, so no two workers can take the same row, and no
transaction is held across the claim.  WAL and ``busy_timeout`` let the workers and the master
write without "database is locked" errors.  The master learns of commits from the file system
(inotify on the database's directory: every commit writes the ``-wal`` file), not by querying.

The schema's version is ``PRAGMA user_version``; :data:`MIGRATIONS` take a table of any earlier
version (0: the first, unversioned one) to the current one, under ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from prefork.jobs.backends import Backend
from prefork.jobs.watching import FileWatcher

MIN_SQLITE = (3, 35)  # UPDATE ... RETURNING
BUSY_TIMEOUT_MS = 10_000

# Version 1: the first table (prefork's first jobs release had it without a version).
V1 = """
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

# Version 2: unique keys, leases, the worker's generation, cancellation, per-job timeouts.
V2 = """
ALTER TABLE prefork_jobs ADD COLUMN unique_key TEXT;
ALTER TABLE prefork_jobs ADD COLUMN lease_until REAL;
ALTER TABLE prefork_jobs ADD COLUMN generation INTEGER;
ALTER TABLE prefork_jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE prefork_jobs ADD COLUMN timeout REAL;
CREATE UNIQUE INDEX prefork_jobs_unique ON prefork_jobs (unique_key)
 WHERE unique_key IS NOT NULL AND state IN ('queued', 'running');
CREATE INDEX prefork_jobs_finished ON prefork_jobs (finished_at) WHERE finished_at IS NOT NULL;
"""

MIGRATIONS = (V1, V2)

CLAIM = """
UPDATE prefork_jobs SET state = 'running', owner = :owner, generation = :generation,
       attempts = attempts + 1, started_at = :now, lease_until = :lease
 WHERE id IN (SELECT id FROM prefork_jobs WHERE state = 'queued' AND run_at <= :now {queues}
              ORDER BY priority DESC, run_at, id LIMIT 1)
RETURNING id, payload, attempts, crashes, queue, timeout
"""


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection in autocommit mode (each statement its own transaction), WAL, with
    ``busy_timeout``; creates or migrates the table."""
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise RuntimeError(f"prefork.jobs needs SQLite >= 3.35 (UPDATE ... RETURNING), "
                           f"this Python has {sqlite3.sqlite_version}")
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    migrate(db)
    return db


def migrate(db: sqlite3.Connection) -> None:
    """Bring the table to the current version (a no-op, one read, when it is)."""
    if db.execute("PRAGMA user_version").fetchone()[0] >= len(MIGRATIONS):
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for step in MIGRATIONS[version:]:
            for statement in step.split(";"):
                if statement.strip():
                    db.execute(statement)
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class SQLiteBackend(Backend):
    """The job table in the SQLite file at ``path``."""

    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.url = self.path
        self.db = connect(self.path)

    def execute(self, sql: str, params: dict[str, Any]) -> Any:
        if self.tally is not None:
            self.tally()
        return self.db.execute(sql, params)

    def claim_sql(self, queues: str) -> str:
        return CLAIM.format(queues=queues)

    def close(self) -> None:
        self.db.close()

    def watcher(self) -> FileWatcher:
        return FileWatcher(self.path)
