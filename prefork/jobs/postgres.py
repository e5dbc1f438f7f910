"""The PostgreSQL backend (psycopg 3): many hosts sharing one queue.

The claim is one statement: a MATERIALIZED CTE picks the next due row ``FOR UPDATE SKIP
LOCKED`` (a row another worker is claiming is skipped, not waited for; MATERIALIZED keeps the
planner from folding the CTE into the UPDATE, where LIMIT would no longer bound the locks) and
the UPDATE takes it, ``RETURNING`` the job.  Autocommit: no transaction is held across a job.

A trigger NOTIFYs channel :data:`CHANNEL` whenever a job becomes queued (an insert, a retry, a
re-queue), from any client, at its commit (so a transactional enqueue wakes no one before it is
visible).  The master LISTENs (:class:`ListenWatcher`).

The schema is created and migrated by prefork: ``prefork_jobs_schema`` holds the version;
:data:`MIGRATIONS` run in one transaction under an advisory lock, so masters starting at once on
one database migrate it once.  Times are epoch seconds (double precision), as on SQLite, taken
from the client's clock.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from prefork.jobs.backends import Backend, to_pyformat

log = logging.getLogger("prefork.jobs")

CHANNEL = "prefork_jobs"
LOCK_KEY = 0x7072_6566  # "pref": the advisory lock of the migrations

V1 = f"""
CREATE TABLE prefork_jobs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue TEXT NOT NULL DEFAULT 'default',
    priority INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'queued',
    payload TEXT NOT NULL,
    run_at DOUBLE PRECISION NOT NULL,
    unique_key TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    crashes INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    timeout DOUBLE PRECISION,
    last_error TEXT,
    result TEXT,
    owner TEXT,
    generation INTEGER,
    lease_until DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    requeued_at DOUBLE PRECISION
);
CREATE INDEX prefork_jobs_next ON prefork_jobs (priority DESC, run_at, id)
 WHERE state = 'queued';
CREATE INDEX prefork_jobs_owner ON prefork_jobs (owner) WHERE owner IS NOT NULL;
CREATE INDEX prefork_jobs_lease ON prefork_jobs (lease_until) WHERE state = 'running';
CREATE INDEX prefork_jobs_finished ON prefork_jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE UNIQUE INDEX prefork_jobs_unique ON prefork_jobs (unique_key)
 WHERE unique_key IS NOT NULL AND state IN ('queued', 'running');
CREATE FUNCTION prefork_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', '');
    RETURN NULL;
END $$;
CREATE TRIGGER prefork_jobs_queued AFTER INSERT ON prefork_jobs
    FOR EACH ROW WHEN (NEW.state = 'queued') EXECUTE FUNCTION prefork_jobs_notify();
CREATE TRIGGER prefork_jobs_requeued AFTER UPDATE OF state ON prefork_jobs
    FOR EACH ROW WHEN (NEW.state = 'queued' AND OLD.state <> 'queued')
    EXECUTE FUNCTION prefork_jobs_notify();
"""

MIGRATIONS = (V1,)

CLAIM = """
WITH next AS MATERIALIZED (
    SELECT id FROM prefork_jobs
     WHERE state = 'queued' AND run_at <= :now {queues}
     ORDER BY priority DESC, run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
UPDATE prefork_jobs AS j SET state = 'running', owner = :owner, generation = :generation,
       attempts = j.attempts + 1, started_at = :now, lease_until = :lease
  FROM next WHERE j.id = next.id
RETURNING j.id, j.payload, j.attempts, j.crashes, j.queue, j.timeout
"""


def migrate(db: psycopg.Connection[Any]) -> None:
    """Create or migrate the schema (one transaction, under the advisory lock)."""
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        db.execute("CREATE TABLE IF NOT EXISTS prefork_jobs_schema (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM prefork_jobs_schema").fetchone()
        version = 0 if row is None else int(row[0])
        if version >= len(MIGRATIONS):
            return
        for step in MIGRATIONS[version:]:
            db.execute(step)
        if row is None:
            db.execute("INSERT INTO prefork_jobs_schema VALUES (%s)", (len(MIGRATIONS),))
        else:
            db.execute("UPDATE prefork_jobs_schema SET version = %s", (len(MIGRATIONS),))


def connect(url: str) -> psycopg.Connection[Any]:
    """An autocommit connection, the schema created or migrated."""
    db = psycopg.connect(url, autocommit=True)
    migrate(db)
    return db


class PostgresBackend(Backend):
    """The job table in the PostgreSQL database at ``url``."""

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        self.db = connect(url)
        self._sql: dict[str, str] = {}  # :name statements as %(name)s, converted once

    def execute(self, sql: str, params: dict[str, Any]) -> Any:
        if self.tally is not None:
            self.tally()
        converted = self._sql.get(sql)
        if converted is None:
            converted = self._sql[sql] = to_pyformat(sql)
        return self.db.execute(converted, params, prepare=True)

    def claim_sql(self, queues: str) -> str:
        return CLAIM.format(queues=queues)

    def close(self) -> None:
        self.db.close()

    def watcher(self) -> ListenWatcher:
        return ListenWatcher(self)


class ListenWatcher:
    """LISTEN on the backend's own connection (the master's): its socket is the fd to wait
    on; notifications that arrive while the master runs a statement are caught by the
    connection's notify handler."""

    def __init__(self, backend: PostgresBackend) -> None:
        self.db = backend.db
        self.changed = False
        self.db.add_notify_handler(self._notified)
        self.db.execute(f"LISTEN {CHANNEL}")

    def _notified(self, _notify: psycopg.Notify) -> None:
        self.changed = True

    def fileno(self) -> int | None:
        return int(self.db.pgconn.socket)

    def mark(self) -> None:
        self.changed = True

    def pause(self) -> None:
        """Nothing: a NOTIFY is sent only when a job becomes queued, not per commit."""

    def resume(self) -> None:
        """Nothing (see pause)."""

    def consume(self) -> bool:
        pgconn = self.db.pgconn
        pgconn.consume_input()
        while pgconn.notifies() is not None:
            self.changed = True
        changed, self.changed = self.changed, False
        return changed

    def close(self) -> None:
        """Nothing of its own: the connection is the backend's."""
