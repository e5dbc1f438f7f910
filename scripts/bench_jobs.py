"""Empty jobs on SQLite: the job pool (2 workers) against a bare claim+finish loop in 2
processes, on the same statements and the same file settings, in the same run.

    python scripts/bench_jobs.py [JOBS]

Prints jobs/s for each and the ratio.  The pool's rate is taken from the rows (first start to
last finish), so the pool's boot is not counted.
"""

from __future__ import annotations

import os
import signal
import socketserver
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prefork.jobs import JobServer, connect, enqueue, open_backend


def fill(path: Path, count: int) -> None:
    db = connect(path)
    db.execute("BEGIN")
    for i in range(count):
        enqueue(db, {"n": i})
    db.execute("COMMIT")
    db.close()


def bare(path: Path, procs: int) -> float:
    start = time.perf_counter()
    pids = []
    for n in range(procs):
        pid = os.fork()
        if pid == 0:
            db = open_backend(str(path))
            owner = f"bare/{n}"
            while (job := db.claim(owner, 1, 30.0)) is not None:
                db.finish(job, owner)
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    return time.perf_counter() - start


class Empty(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        pass


def pool(path: Path, count: int, workers: int) -> float:
    # The master in a child with no other thread: forking while a thread is inside SQLite
    # would leave its mutexes locked in the workers.
    master = os.fork()
    if master == 0:
        try:
            JobServer(path, Empty, workers=workers).serve_forever()
        finally:
            os._exit(0)
    db = connect(path)
    done = "SELECT count(*) FROM prefork_jobs WHERE state = 'done'"
    while db.execute(done).fetchone()[0] < count:
        time.sleep(0.05)
    span = "SELECT min(started_at), max(finished_at) FROM prefork_jobs"
    first, last = db.execute(span).fetchone()
    os.kill(master, signal.SIGTERM)
    os.waitpid(master, 0)
    return float(last - first)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "bare.db", Path(tmp) / "pool.db"
        fill(a, count)
        fill(b, count)
        bare_s = bare(a, 2)
        pool_s = pool(b, count, 2)
    print(f"bare claim+finish, 2 processes: {count / bare_s:8.0f} jobs/s")
    print(f"job pool, 2 workers:            {count / pool_s:8.0f} jobs/s")
    print(f"pool / bare: {bare_s / pool_s:.2f}")


if __name__ == "__main__":
    main()
