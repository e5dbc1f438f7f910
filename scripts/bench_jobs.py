"""The job pool measured: empty-job throughput against a bare claim+finish loop on the same
database in the same run, CPU-bound jobs on 1 and 2 workers, the re-run delay after a SIGKILL
mid-job, and RQ (a Redis server from the OS packages) on the same empty and CPU-bound jobs.

    python scripts/bench_jobs.py [--jobs 5000] [--cpu-jobs 200] [--backend sqlite|postgresql]
                                 [--rounds 3] [--kills 10] [--rq] [--json FILE]

PostgreSQL runs in a throwaway cluster (tests/pgcluster.py: unix socket, fsync and
synchronous_commit off, as for the tests).  RQ needs ``redis-server`` on PATH and the ``rq``
package (the ``bench`` extra); it is left out with a line when either is missing.  Rates are
taken from the rows (first start to last finish), so boots are not counted; RQ's from its
first job's start to its last job's end (its own timestamps).  On a shared machine the rates
move with the load: compare the ratios, measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socketserver
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import psutil  # noqa: E402

from prefork.jobs import Backend, JobServer, enqueue, open_backend  # noqa: E402

CPU_LOOPS = 200_000  # one CPU-bound job: ~10-20 ms of pure Python here


def burn(loops: int = CPU_LOOPS) -> int:
    total = 0
    for i in range(loops):
        total += i * i % 7
    return total


def empty() -> None:
    """RQ's empty job."""


class Empty(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        pass


class Cpu(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        burn()


class HangOnce(socketserver.BaseRequestHandler):
    """Notes its pid, then sleeps on the first run."""

    def handle(self) -> None:
        job = self.request
        if job.crashes == 0:
            self.server.backend.execute(  # type: ignore[attr-defined]
                "INSERT INTO holders (job, pid) VALUES (:job, :pid)",
                {"job": job.id, "pid": os.getpid()})
            time.sleep(60)


def fill(url: str, count: int) -> None:
    db = open_backend(url)
    raw: Any = db.db  # type: ignore[attr-defined]
    if hasattr(raw, "transaction"):
        with raw.transaction():
            for n in range(count):
                enqueue(raw, {"n": n})
    else:
        raw.execute("BEGIN")
        for n in range(count):
            enqueue(raw, {"n": n})
        raw.execute("COMMIT")
    db.close()


def reset(url: str) -> None:
    db = open_backend(url)
    db.execute("DELETE FROM prefork_jobs", {})
    db.close()


def bare(url: str, procs: int, usage: dict[str, float] | None = None) -> float:
    """Claim+finish in ``procs`` processes until the table is empty; seconds.  ``usage["cpu"]``:
    their CPU seconds (user + system, from wait4)."""
    start = time.perf_counter()
    cpu = 0.0
    pids = []
    for n in range(procs):
        pid = os.fork()
        if pid == 0:
            db = open_backend(url)
            owner = f"bare/{n}"
            while (job := db.claim(owner, 1, 30.0)) is not None:
                db.finish(job, owner)
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        _, _, rusage = os.wait4(pid, 0)
        cpu += rusage.ru_utime + rusage.ru_stime
    if usage is not None:
        usage["cpu"] = cpu
    return time.perf_counter() - start


LEFT = "SELECT 1 FROM prefork_jobs WHERE state IN ('queued', 'running') LIMIT 1"


def pool_cpu(master: int) -> float:
    """CPU seconds (user + system) so far of the master ``master`` and its live workers."""
    proc = psutil.Process(master)
    total = 0.0
    for one in (proc, *proc.children()):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = one.cpu_times()
            total += times.user + times.system
    return total


@contextlib.contextmanager
def running_pool(url: str, handler: type[socketserver.BaseRequestHandler],
                 workers: int, usage: dict[str, float] | None = None) -> Iterator[Backend]:
    """The pool's master in a forked child; ``usage["cpu"]``: the CPU seconds (user + system)
    of the master and its workers, from the master's reap (wait4 counts the workers it
    reaped)."""
    master = os.fork()
    if master == 0:
        try:
            JobServer(url, handler, workers=workers).serve_forever()
        finally:
            os._exit(0)
    db = open_backend(url)
    db.master = master  # type: ignore[attr-defined]  # for pool_cpu()
    try:
        yield db
    finally:
        os.kill(master, signal.SIGTERM)
        _, _, rusage = os.wait4(master, 0)
        if usage is not None:
            usage["cpu"] = rusage.ru_utime + rusage.ru_stime  # pool() keeps it as cpu_all
        db.close()


def wait(check: Callable[[], bool], timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.02)


def pool(url: str, count: int, workers: int,
         handler: type[socketserver.BaseRequestHandler] = Empty,
         usage: dict[str, float] | None = None) -> float:
    """The pool's seconds from its first start to its last finish over ``count`` jobs, added
    (one transaction) once its workers wait.  ``usage["cpu"]``: the CPU seconds of master and
    workers while the jobs ran (their boots and the stop left out); ``usage["cpu_all"]``: from
    the master's reap, everything."""
    with running_pool(url, handler, workers, usage) as db:
        master = db.master  # type: ignore[attr-defined]
        wait(lambda: len(psutil.Process(master).children()) >= workers)
        time.sleep(0.5)  # booted and waiting (an idle pool uses no CPU)
        before = pool_cpu(master)
        fill(url, count)
        # One index probe per look (a count of the done rows every 20 ms was a reader beside
        # the pool that the bare loop did not have).
        wait(lambda: db.execute(LEFT, {}).fetchone() is None)
        spent = pool_cpu(master) - before
        first, last = db.execute("SELECT min(started_at), max(finished_at) FROM prefork_jobs",
                                 {}).fetchone()
    if usage is not None:
        usage["cpu_all"], usage["cpu"] = usage["cpu"], spent
    return float(last - first)


def rerun_delays(url: str, kills: int) -> list[tuple[float, float]]:
    """ms from a SIGKILL mid-job to the master's re-queue (at the reap), and from there to the
    job's next start."""
    out = []
    setup = open_backend(url)
    setup.execute("CREATE TABLE IF NOT EXISTS holders (job INTEGER, pid INTEGER)", {})
    setup.close()
    row = "SELECT state, owner, crashes, requeued_at, started_at FROM prefork_jobs WHERE id = :id"
    holder = "SELECT pid FROM holders WHERE job = :id"
    with running_pool(url, HangOnce, 2) as db:
        for _ in range(kills):
            job_id = db.enqueue({"hang": True})
            wait(lambda job_id=job_id: db.execute(holder, {"id": job_id}).fetchone()
                 is not None)
            pid = db.execute(holder, {"id": job_id}).fetchone()[0]
            killed = time.time()
            os.kill(pid, signal.SIGKILL)
            wait(lambda job_id=job_id: db.execute(row, {"id": job_id}).fetchone()[2] == 1
                 and db.execute(row, {"id": job_id}).fetchone()[0] != "queued")
            _, _, _, requeued, started = db.execute(row, {"id": job_id}).fetchone()
            out.append(((requeued - killed) * 1000, (started - requeued) * 1000))
    return out


# -- RQ ------------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    server = shutil.which("redis-server")
    try:
        import rq  # noqa: F401
    except ImportError:
        server = None
    if server is None:
        yield None
        return
    with tempfile.TemporaryDirectory() as tmp:
        sock = f"{tmp}/redis.sock"
        proc = subprocess.Popen([server, "--port", "0", "--unixsocket", sock, "--save", "",
                                 "--appendonly", "no"], stdout=subprocess.DEVNULL)
        try:
            wait(lambda: os.path.exists(sock), 10)
            yield sock
        finally:
            proc.terminate()
            proc.wait()


def rq_run(sock: str, func: str, count: int, workers: int) -> float:
    """RQ's default forking Worker x ``workers`` on ``count`` jobs of ``func`` (by name: RQ
    refuses functions of ``__main__``); seconds from the first start to the last end."""
    from redis import Redis
    from rq import Queue, Worker

    redis = Redis(unix_socket_path=sock)
    redis.flushall()
    queue = Queue("bench", connection=redis)
    with redis.pipeline() as pipe:
        for _ in range(count):
            queue.enqueue(func, pipeline=pipe)
        pipe.execute()
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                Worker([Queue("bench", connection=Redis(unix_socket_path=sock))],
                       connection=Redis(unix_socket_path=sock)).work(burst=True,
                                                                     logging_level="WARNING")
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    registry = queue.finished_job_registry
    jobs = queue.job_class.fetch_many(registry.get_job_ids(), connection=redis)
    done = [j for j in jobs if j is not None]
    if len(done) != count:
        raise SystemExit(f"RQ finished {len(done)} of {count}")
    first = min(j.started_at for j in done if j.started_at)
    last = max(j.ended_at for j in done if j.ended_at)
    return (last - first).total_seconds()


# -- main ----------------------------------------------------------------------------------


@contextlib.contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield str(Path(tmp) / "bench.db")
        return
    import pgcluster

    reason = pgcluster.skip_reason()
    if reason:
        raise SystemExit(reason)
    with pgcluster.cluster() as found:
        yield found.create_database("bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--cpu-jobs", type=int, default=200)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--rq", action="store_true", help="RQ on the same jobs")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    out: dict[str, Any] = {"backend": args.backend, "jobs": args.jobs,
                           "load_before": os.getloadavg()[0]}
    with database(args.backend) as url:
        open_backend(url).close()
        ratios, bare_rates, pool_rates = [], [], []
        empty_loads, cpu_ratios, bare_us, pool_us = [], [], [], []
        for _ in range(args.rounds):  # alternating, in the same run
            empty_loads.append(os.getloadavg()[0])
            reset(url)
            fill(url, args.jobs)
            spent: dict[str, float] = {}
            bare_s = bare(url, 2, spent)
            bare_us.append(spent["cpu"] / args.jobs * 1e6)
            reset(url)
            pool_s = pool(url, args.jobs, 2, Empty, spent)
            pool_us.append(spent["cpu"] / args.jobs * 1e6)
            bare_rates.append(args.jobs / bare_s)
            pool_rates.append(args.jobs / pool_s)
            ratios.append(bare_s / pool_s)
            # CPU per job: what each costs, whatever share of the cores the load left it.
            cpu_ratios.append(bare_us[-1] / pool_us[-1])
            print(f"empty jobs (load {empty_loads[-1]:.2f}): bare claim+finish x2 "
                  f"{args.jobs / bare_s:7.0f}/s, pool 2 workers {args.jobs / pool_s:7.0f}/s, "
                  f"pool/bare {bare_s / pool_s:.2f}; CPU per job bare {bare_us[-1]:.0f} us, "
                  f"pool {pool_us[-1]:.0f} us (master and workers), bare/pool "
                  f"{cpu_ratios[-1]:.2f}")
        out.update(bare_per_s=bare_rates, pool_per_s=pool_rates, pool_over_bare=ratios,
                   empty_round_loads=empty_loads, bare_cpu_us=bare_us, pool_cpu_us=pool_us,
                   cpu_bare_over_pool=cpu_ratios)
        cpu, cores, loads = [], [], []
        for _ in range(args.rounds):
            times, used = {}, {}
            loads.append(os.getloadavg()[0])
            for workers in (1, 2):
                reset(url)
                usage: dict[str, float] = {}
                times[workers] = pool(url, args.cpu_jobs, workers, Cpu, usage)
                used[workers] = usage["cpu"]
            cpu.append(times[1] / times[2])
            # CPU seconds of master and workers while the jobs ran, over the jobs' span: how
            # many cores the pool had on average.
            cores.append(used[2] / times[2])
            print(f"CPU-bound jobs (load {loads[-1]:.2f}): 1 worker "
                  f"{args.cpu_jobs / times[1]:.1f}/s, 2 workers {args.cpu_jobs / times[2]:.1f}/s,"
                  f" speed-up {times[1] / times[2]:.2f}x; CPU per job "
                  f"{used[1] / args.cpu_jobs * 1000:.1f} ms (1 worker), "
                  f"{used[2] / args.cpu_jobs * 1000:.1f} ms (2); cores busy with 2 workers "
                  f"{cores[-1]:.2f}")
        out.update(cpu_speedup=cpu, cpu_cores_busy=cores, cpu_round_loads=loads)
        if args.kills:
            reset(url)
            delays = rerun_delays(url, args.kills)
            out["kill_to_requeue_ms"] = [a for a, _ in delays]
            out["requeue_to_rerun_ms"] = rerun = [b for _, b in delays]
            print(f"SIGKILL mid-job ({len(delays)} kills): kill to re-queue median "
                  f"{statistics.median(out['kill_to_requeue_ms']):.1f} ms; re-queue (the reap) "
                  f"to re-run median {statistics.median(rerun):.1f} ms, max {max(rerun):.1f} ms")
    if args.rq:
        with redis_server() as sock:
            if sock is None:
                print("RQ left out: no redis-server or no rq package")
            else:
                rq_empty = [args.jobs / rq_run(sock, "bench_jobs.empty", args.jobs, 2)
                            for _ in range(args.rounds)]
                rq_cpu = [args.cpu_jobs / rq_run(sock, "bench_jobs.burn", args.cpu_jobs, 2)
                          for _ in range(args.rounds)]
                out.update(rq_empty_per_s=rq_empty, rq_cpu_per_s=rq_cpu)
                print(f"RQ, 2 workers: empty {', '.join(f'{r:.0f}' for r in rq_empty)}/s; "
                      f"CPU-bound {', '.join(f'{r:.1f}' for r in rq_cpu)}/s")
    out["load_after"] = os.getloadavg()[0]
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
