"""The caller's API: ``connect(url)`` and ``enqueue(db, payload, ...)`` on the caller's own
connection, inside the caller's transaction if one is open (transactional enqueue: the job
exists exactly when the caller's other changes do).

``connect`` gives the driver's own connection (``sqlite3.Connection`` in autocommit mode, or a
psycopg ``Connection``), the schema created or migrated; ``enqueue`` takes either (a psycopg
connection the caller opened elsewhere works too, once the schema exists).  For prefork's own
statements on a table, see :class:`~prefork.jobs.backends.Backend` (``open_backend(url)``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from prefork.jobs.backends import (
    DEFAULT_QUEUE,
    ENQUEUE,
    Backend,
    Job,
    enqueue_on,
    is_postgres,
    sqlite_path,
    to_pyformat,
)

__all__ = ["Job", "connect", "enqueue", "open_backend"]


def open_backend(url: str) -> Backend:
    """prefork's statements on the table at ``url`` (see prefork/jobs/backends.py), its schema
    created or migrated."""
    if is_postgres(url):
        from prefork.jobs.postgres import PostgresBackend

        return PostgresBackend(url)
    from prefork.jobs.sqlite import SQLiteBackend

    return SQLiteBackend(sqlite_path(url))


def connect(url: str | Path) -> Any:
    """A connection to the job table at ``url`` (a SQLite path or ``sqlite:///``, or
    ``postgresql://``), in autocommit mode."""
    url = str(url)
    if is_postgres(url):
        import prefork.jobs.postgres as postgres

        return postgres.connect(url)
    import prefork.jobs.sqlite as sqlite

    return sqlite.connect(sqlite_path(url))


class _PyformatTarget:
    """A psycopg connection seen through sqlite3's ``:name`` parameter style."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def execute(self, sql: str, params: dict[str, Any]) -> Any:
        return self.db.execute(to_pyformat(sql), params)


def enqueue(db: Any, payload: Any, *, queue: str = DEFAULT_QUEUE, priority: int = 0,
            run_at: float | None = None, unique: str | None = None,
            timeout: float | None = None) -> int | None:
    """Add a job on ``db`` (inside its open transaction, if any); its id, or None when
    ``unique`` names a job still queued or running.  ``run_at``: epoch seconds it becomes due
    (default now); ``priority``: higher first; ``timeout``: seconds a run may take before the
    master kills its worker."""
    target = db if isinstance(db, sqlite3.Connection) else _PyformatTarget(db)
    assert ENQUEUE  # the statement both share (backends.py)
    return enqueue_on(target, payload, queue=queue, priority=priority, run_at=run_at,
                      unique=unique, timeout=timeout)
