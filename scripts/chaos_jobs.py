"""Random worker kills under load on a job pool: every job finished exactly once or is
accounted for (each run beyond a job's first follows a crash the master recorded), none lost.

    python scripts/chaos_jobs.py [--kills 1000] [--jobs 3000] [--backend sqlite|postgresql]
                                 [--db URL]

Without --db, a temp SQLite file, or (postgresql) a throwaway cluster (tests/pgcluster.py).
The pool has 2 workers; a kill is sent once a few more jobs ran since the last one; jobs are
added as needed so the pool is never idle before the kills are done.  Prints the tally and
exits 1 on any job lost or run without a recorded crash.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import socketserver
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import psutil  # noqa: E402

from prefork.jobs import Backend, JobServer, open_backend  # noqa: E402


class Record(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        job = self.request
        self.server.backend.execute(  # type: ignore[attr-defined]
            "INSERT INTO runs (job, pid) VALUES (:job, :pid)",
            {"job": job.id, "pid": os.getpid()})
        time.sleep(0.002)


class Sturdy(JobServer):
    max_crashes = 1_000_000  # the kills are the script's, not the jobs' fault


@contextlib.contextmanager
def database(args: argparse.Namespace) -> Iterator[str]:
    if args.db:
        yield args.db
    elif args.backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield str(Path(tmp) / "chaos.db")
    else:
        import pgcluster

        reason = pgcluster.skip_reason()
        if reason:
            raise SystemExit(reason)
        with pgcluster.cluster() as found:
            yield found.create_database("chaos")


def ran_jobs(db: Backend, pid: int) -> bool:
    return db.execute("SELECT 1 FROM runs WHERE pid = :pid LIMIT 1", {"pid": pid}).fetchone() \
        is not None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--db", help="a DB URL to use instead (its table is emptied)")
    args = parser.parse_args()
    with database(args) as url:
        db = open_backend(url)
        db.execute("DROP TABLE IF EXISTS runs", {})
        db.execute("DELETE FROM prefork_jobs", {})
        db.execute("CREATE TABLE runs (job INTEGER, pid INTEGER)", {})
        added = 0

        def add(count: int) -> None:
            nonlocal added
            for _ in range(count):
                db.enqueue({"n": added})
                added += 1

        add(args.jobs)
        master = os.fork()
        if master == 0:
            try:
                Sturdy(url, Record, workers=2).serve_forever()
            finally:
                os._exit(0)
        sent, start = 0, time.monotonic()
        try:
            while sent < args.kills:
                seen = db.execute("SELECT count(*) FROM runs", {}).fetchone()[0]
                queued = db.execute("SELECT count(*) FROM prefork_jobs WHERE state = 'queued'",
                                    {}).fetchone()[0]
                if queued < 50:
                    add(500)
                deadline = time.monotonic() + 30
                while db.execute("SELECT count(*) FROM runs", {}).fetchone()[0] < seen + 2:
                    if time.monotonic() > deadline:
                        raise SystemExit("no progress for 30 s")
                    time.sleep(0.002)
                # Only workers that ran a job (booted): killing a booting one is a boot
                # failure, and enough of those in a row stop the pool (by design).
                workers = [w for w in psutil.Process(master).children() if ran_jobs(db, w.pid)]
                if workers:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(random.choice(workers).pid, signal.SIGKILL)
                        sent += 1
            deadline = time.monotonic() + 300
            while db.execute("SELECT count(*) FROM prefork_jobs WHERE state <> 'done'",
                             {}).fetchone()[0]:
                if time.monotonic() > deadline:
                    raise SystemExit("jobs still not done after 300 s")
                time.sleep(0.05)
        finally:
            os.kill(master, signal.SIGTERM)
            os.waitpid(master, 0)
        elapsed = time.monotonic() - start
        rows = db.execute("SELECT p.id, p.state, p.crashes, (SELECT count(*) FROM runs r"
                          " WHERE r.job = p.id) FROM prefork_jobs p", {}).fetchall()
        db.close()
    lost = [r for r in rows if r[1] != "done" or r[3] < 1]
    unexplained = [r for r in rows if r[3] > r[2] + 1]
    crashes = sum(r[2] for r in rows)
    twice = sum(1 for r in rows if r[3] > 1)
    print(f"{args.backend}: {sent} kills in {elapsed:.1f} s; {len(rows)} jobs, all done: "
          f"{not lost}; {crashes} crashes recorded; {twice} jobs ran more than once, each "
          f"after a recorded crash: {not unexplained}")
    return 1 if lost or unexplained or len(rows) != added else 0


if __name__ == "__main__":
    sys.exit(main())
