"""The job table's backends, chosen from the DB URL, and the statements they share.

A DB URL is a path or ``sqlite:///path`` (SQLite, prefork/jobs/sqlite.py) or
``postgresql://...`` / ``postgres://...`` (PostgreSQL with psycopg 3, prefork/jobs/postgres.py).
Each backend owns one connection in autocommit mode: every statement below is its own
transaction, and none is held across a job.

Invariants, bound to the columns: ``state`` is one of :data:`STATES`; ``owner`` is set exactly
while ``state = 'running'`` (the token of the worker incarnation that claimed it,
``<boot id>/<master incarnation>/<worker serial>``); every change to a running job is guarded
by ``owner = :owner AND state = 'running'``, so a job that is no longer one's own is never
touched.  ``lease_until`` is renewed by the master of the owner while the owner is alive; only
a lease that expired (a master or host gone) lets another master take the job back.

The statements are written once, with ``:name`` parameters (sqlite3's style; the PostgreSQL
backend rewrites them to ``%(name)s``); only the claim differs by dialect.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

STATES = ("queued", "running", "done", "failed", "dead", "cancelled")
FINAL_STATES = ("done", "failed", "dead", "cancelled")
DEFAULT_QUEUE = "default"


@dataclass
class Job:
    """One claimed job, the handler's ``self.request``.  A handler may set ``result``
    (JSON-able): the finish stores it."""

    id: int
    payload: Any
    attempt: int  # 1 for the first run
    crashes: int  # how many workers died running it before
    queue: str = DEFAULT_QUEUE
    timeout: float | None = None  # seconds this run may take (the master kills past it)
    result: Any = None


FINISH = """
UPDATE prefork_jobs SET state = 'done', owner = NULL, lease_until = NULL, finished_at = :now,
       result = :result
 WHERE id = :id AND owner = :owner AND state = 'running'
"""

RETRY = """
UPDATE prefork_jobs
   SET state = CASE WHEN cancel_requested = 1 THEN 'cancelled'
                    WHEN attempts >= :max_attempts THEN 'failed' ELSE 'queued' END,
       owner = NULL, lease_until = NULL, run_at = :run_at, last_error = :error,
       finished_at = CASE WHEN cancel_requested = 1 OR attempts >= :max_attempts THEN :now END
 WHERE id = :id AND owner = :owner AND state = 'running'
RETURNING state
"""

# The master's one statement when it reaped a worker: exactly the jobs that worker held.  A
# death (a signal, a failing exit status) counts against the crash budget; a clean exit (a
# stop that interrupted a claim) only puts the job back; a job whose cancel was asked for
# (its worker was killed for it) ends cancelled.
_REQUEUE_STATE = """CASE WHEN cancel_requested = 1 THEN 'cancelled'
                    WHEN :crash = 1 AND crashes + 1 >= :max_crashes THEN 'dead'
                    ELSE 'queued' END"""
REQUEUE = f"""
UPDATE prefork_jobs
   SET state = {_REQUEUE_STATE},
       finished_at = CASE WHEN cancel_requested = 1
                            OR (:crash = 1 AND crashes + 1 >= :max_crashes) THEN :now END,
       crashes = crashes + :crash, owner = NULL, lease_until = NULL, last_error = :reason,
       run_at = :now, requeued_at = :now
 WHERE owner = :owner AND state = 'running'
"""

# A master renews the leases of the jobs its live workers hold -- by their tokens, not by its
# prefix: a claim of a worker killed while its statement ran may commit on a PostgreSQL server
# after the master's re-queue at the reap (see Keeper), and such a job must expire too.
RENEW = """
UPDATE prefork_jobs SET lease_until = :until
 WHERE state = 'running' AND owner IN ({owners})
"""

# Any master takes back, once, the jobs whose lease expired: their master is gone (or their
# worker is, and no re-queue saw the job).  Counted as a crash (a job that takes its whole
# host down must not loop either).
RESCUE = f"""
UPDATE prefork_jobs
   SET state = {_REQUEUE_STATE.replace(":crash = 1 AND ", "")},
       finished_at = CASE WHEN cancel_requested = 1 OR crashes + 1 >= :max_crashes
                          THEN :now END,
       crashes = crashes + 1, last_error = 'lease expired: ' || owner,
       owner = NULL, lease_until = NULL, run_at = :now, requeued_at = :now
 WHERE state = 'running' AND lease_until < :now
"""

ENQUEUE = """
INSERT INTO prefork_jobs (queue, priority, payload, run_at, unique_key, timeout, created_at)
VALUES (:queue, :priority, :payload, :run_at, :unique_key, :timeout, :now)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state IN ('queued', 'running')
DO NOTHING
RETURNING id
"""

# A queued job is cancelled at once; a running one is marked, and its master kills its worker.
CANCEL = """
UPDATE prefork_jobs
   SET state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
       finished_at = CASE WHEN state = 'queued' THEN :now ELSE finished_at END,
       cancel_requested = 1
 WHERE id = :id AND state IN ('queued', 'running')
RETURNING state
"""

# The running jobs of this master's workers that must stop: cancelled, or past their timeout.
TO_STOP = """
SELECT id, owner, cancel_requested FROM prefork_jobs
 WHERE state = 'running' AND owner LIKE :mine
   AND (cancel_requested = 1 OR (timeout IS NOT NULL AND started_at + timeout < :now))
"""

# One statement: how many are due (at most :cap), and when the next later one is.
DUE = """
SELECT (SELECT count(*) FROM (SELECT id FROM prefork_jobs
                               WHERE state = 'queued' AND run_at <= :now {queues}
                               LIMIT :cap) AS due),
       (SELECT min(run_at) FROM prefork_jobs WHERE state = 'queued' AND run_at > :now {queues})
"""

PRUNE = """
DELETE FROM prefork_jobs
 WHERE state IN ('done', 'failed', 'dead', 'cancelled') AND finished_at < :before
"""

COUNTS = "SELECT queue, state, count(*) FROM prefork_jobs GROUP BY queue, state"
RUNNING = """
SELECT id, queue, owner, generation, attempts, started_at FROM prefork_jobs
 WHERE state = 'running' ORDER BY started_at
"""
ROW = "SELECT * FROM prefork_jobs WHERE id = :id"


def queue_filter(queues: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """The ``AND queue IN (...)`` clause for a worker that serves only ``queues`` (all if
    empty), and its parameters."""
    if not queues:
        return "", {}
    names = {f"q{i}": name for i, name in enumerate(queues)}
    return "AND queue IN (" + ", ".join(f":{key}" for key in names) + ")", names


class Backend:
    """One connection to a job table.  Methods: claim(), finish(), retry(), requeue_held(),
    enqueue(), cancel(), renew(), rescue(), to_stop(), due(), prune(), counts(), running(),
    row(), close(); watcher() (in the master: what tells it about commits).  Subclasses give
    the connection, ``execute`` and the dialect's claim."""

    dialect = ""
    url = ""
    tally: Callable[[], None] | None = None  # called once per statement (prefork/jobs/stats.py)
    # The claim statement and its parameters, per tuple of queues (made once, not per claim).
    _claims: dict[tuple[str, ...], tuple[str, dict[str, str]]] | None = None

    def execute(self, sql: str, params: dict[str, Any]) -> Any:
        """Run one statement; a cursor (``fetchone``, ``fetchall``, ``rowcount``)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def watcher(self) -> Any:
        """A :class:`~prefork.jobs.watching.Watcher` for this database (the master's)."""
        raise NotImplementedError

    def claim_sql(self, queues: str) -> str:
        raise NotImplementedError

    # -- a worker's statements -----------------------------------------------------------

    def claim(self, owner: str, generation: int, lease: float,
              queues: tuple[str, ...] = ()) -> Job | None:
        """Take the next due job (highest priority, then oldest run_at) as ``owner``."""
        claims = self._claims
        if claims is None:
            claims = self._claims = {}
        made = claims.get(queues)
        if made is None:
            clause, names = queue_filter(queues)
            made = claims[queues] = (self.claim_sql(clause), names)
        sql, names = made
        now = time.time()
        row = self.execute(sql, {"owner": owner, "generation": generation, "now": now,
                                 "lease": now + lease, **names}).fetchone()
        if row is None:
            return None
        job_id, payload, attempts, crashes, queue, timeout = row
        return Job(int(job_id), json.loads(payload), attempts, crashes, queue, timeout)

    def finish(self, job: Job, owner: str) -> bool:
        """Mark ``job`` done if it is still ``owner``'s; False (nothing changed) otherwise."""
        result = job.result
        cursor = self.execute(FINISH, {"now": time.time(),
                                       "result": "null" if result is None else json.dumps(result),
                                       "id": job.id, "owner": owner})
        return bool(cursor.rowcount == 1)

    def retry(self, job: Job, owner: str, error: str, delay: float,
              max_attempts: int) -> str | None:
        """Queue ``job`` again after ``delay`` seconds, or fail it after ``max_attempts``; the
        new state, or None if the job was no longer ``owner``'s."""
        now = time.time()
        row = self.execute(RETRY, {"max_attempts": max_attempts, "run_at": now + delay,
                                   "error": error, "now": now, "id": job.id,
                                   "owner": owner}).fetchone()
        return None if row is None else str(row[0])

    # -- the master's statements ---------------------------------------------------------

    def requeue_held(self, owner: str, reason: str, crashed: bool, max_crashes: int) -> int:
        """Put back every job ``owner`` held (the master, after reaping it); how many."""
        cursor = self.execute(REQUEUE, {"crash": int(crashed), "max_crashes": max_crashes,
                                        "reason": reason, "now": time.time(), "owner": owner})
        return int(cursor.rowcount)

    def renew(self, owners: list[str], lease: float) -> int:
        """Extend the leases of the jobs held by ``owners`` (a master's live workers); how
        many."""
        if not owners:
            return 0
        names = {f"o{i}": owner for i, owner in enumerate(owners)}
        sql = RENEW.format(owners=", ".join(f":{key}" for key in names))
        cursor = self.execute(sql, {"until": time.time() + lease, **names})
        return int(cursor.rowcount)

    def rescue(self, max_crashes: int) -> int:
        """Re-queue (once) the jobs whose lease expired; how many."""
        cursor = self.execute(RESCUE, {"now": time.time(), "max_crashes": max_crashes})
        return int(cursor.rowcount)

    def to_stop(self, incarnation: str) -> list[tuple[int, str, bool]]:
        """(job id, owner, cancelled) of this master's running jobs that were cancelled or ran
        past their timeout."""
        rows = self.execute(TO_STOP, {"mine": like_prefix(incarnation),
                                      "now": time.time()}).fetchall()
        return [(int(job_id), owner, bool(cancel)) for job_id, owner, cancel in rows]

    def due(self, cap: int, queues: tuple[str, ...] = ()) -> tuple[int, float | None]:
        """How many jobs are due now (at most ``cap``), and when the next later one is due
        (epoch seconds; None if none is scheduled)."""
        clause, names = queue_filter(queues)
        now = time.time()
        count, later = self.execute(DUE.format(queues=clause),
                                    {"now": now, "cap": cap, **names}).fetchone()
        return int(count), None if later is None else float(later)

    def prune(self, retention: float) -> int:
        """Delete the finished jobs older than ``retention`` seconds; how many."""
        return int(self.execute(PRUNE, {"before": time.time() - retention}).rowcount)

    # -- anyone's ------------------------------------------------------------------------

    def enqueue(self, payload: Any, *, queue: str = DEFAULT_QUEUE, priority: int = 0,
                run_at: float | None = None, unique: str | None = None,
                timeout: float | None = None) -> int | None:
        """Add a job; its id, or None when ``unique`` names a job still queued or running."""
        return enqueue_on(self, payload, queue=queue, priority=priority, run_at=run_at,
                          unique=unique, timeout=timeout)

    def cancel(self, job_id: int) -> str | None:
        """Cancel a job: 'cancelled' (it was queued), 'running' (its master will stop it), or
        None (no such job, or it had finished)."""
        row = self.execute(CANCEL, {"id": job_id, "now": time.time()}).fetchone()
        return None if row is None else str(row[0])

    def counts(self) -> dict[str, dict[str, int]]:
        """queue -> state -> number of jobs."""
        out: dict[str, dict[str, int]] = {}
        for queue, state, count in self.execute(COUNTS, {}).fetchall():
            out.setdefault(queue, {})[state] = int(count)
        return out

    def running(self) -> list[dict[str, Any]]:
        keys = ("id", "queue", "owner", "generation", "attempts", "started_at")
        return [dict(zip(keys, row, strict=True)) for row in self.execute(RUNNING, {}).fetchall()]

    def row(self, job_id: int) -> dict[str, Any] | None:
        """Every column of one job, or None."""
        cursor = self.execute(ROW, {"id": job_id})
        found = cursor.fetchone()
        if found is None:
            return None
        return {col[0]: value for col, value in zip(cursor.description, found, strict=True)}


def enqueue_on(target: Any, payload: Any, *, queue: str = DEFAULT_QUEUE, priority: int = 0,
               run_at: float | None = None, unique: str | None = None,
               timeout: float | None = None) -> int | None:
    """:data:`ENQUEUE` on ``target``: a backend, or anything with ``execute(sql, params)``
    in sqlite3's ``:name`` style."""
    now = time.time()
    row = target.execute(ENQUEUE, {
        "queue": queue, "priority": priority, "payload": json.dumps(payload),
        "run_at": now if run_at is None else run_at, "unique_key": unique,
        "timeout": timeout, "now": now}).fetchone()
    return None if row is None else int(row[0])


def like_prefix(incarnation: str) -> str:
    """The LIKE pattern of every owner token of one master (no wildcard in the tokens)."""
    return incarnation + "/%"


NAMED = re.compile(r"(?<!:):([a-z_][a-z0-9_]*)")


def to_pyformat(sql: str) -> str:
    """``:name`` parameters as ``%(name)s`` (psycopg's style); ``%`` doubled first."""
    return NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def sqlite_path(url: str) -> str:
    """The file of a SQLite DB URL: ``sqlite:///rel/path``, ``sqlite:////abs/path``, or the path."""
    return url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
