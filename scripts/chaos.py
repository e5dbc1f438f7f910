"""Chaos run against a prefork pool under continuous load (bounded in time, loopback only).

``python scripts/chaos.py`` (30 s of worker kills, then the master kill; ``--quick`` for 5 s)

1. Workers: an HTTP hello pool serves closed-loop clients while a random worker is SIGKILLed
   every ``--interval`` (200 ms) for ``--duration`` (30 s).  Every request is recorded with its
   start and end time; a failed request is *explained* when it can be matched to a kill that
   happened while it was in flight (each kill explains at most one failure: a sync worker holds
   at most one request).  Failures left unexplained count as lost -- the listening socket
   stays open in the master, so a connection waiting in the backlog must be served by another
   worker.  Targets: failed <= workers killed, 0 unexplained.
2. Master: SIGKILL the master under load; every worker must be gone soon after (parent-death
   signal), leaving no orphan.  Requests after the kill fail by design (no server any more).
3. Reload: repeated SIGHUP under load, once reload exists; until then the row says
   "not yet measurable: reload not implemented".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import random
import select
import signal
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procs import Proc, free_port, wait_for

HOST = "127.0.0.1"
APP = "workers.http_hello:Hello"
REQUEST_TIMEOUT = 5.0
READY_TIMEOUT = 20.0

Record = tuple[float, float, str]  # start, end, "" for success or the error's name


# -- load ---------------------------------------------------------------------------------------


def one_request(port: int) -> str:
    """One HTTP/1.0 GET; "" on a complete 200 response, else the failure's name."""
    try:
        with socket.create_connection((HOST, port), timeout=REQUEST_TIMEOUT) as sock:
            sock.sendall(f"GET / HTTP/1.0\r\nHost: {HOST}\r\n\r\n".encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError as exc:
        return type(exc).__name__
    data = b"".join(chunks)
    if not data.startswith(b"HTTP/1.0 200") or not data.endswith(b"Hello, world!\n"):
        return "BadResponse" if data else "EmptyResponse"
    return ""


def client(port: int, stop_at: float, stop: Any, out: Any) -> None:
    records: list[Record] = []
    while time.monotonic() < stop_at and not stop.is_set():
        start = time.monotonic()
        error = one_request(port)
        records.append((start, time.monotonic(), error))
        if error == "ConnectionRefusedError":
            time.sleep(0.001)  # the server is gone (master kill): do not spin
    out.put(records)


class Load:
    """``processes`` closed-loop HTTP clients in their own processes."""

    def __init__(self, port: int, processes: int, seconds: float) -> None:
        ctx = mp.get_context("fork")
        self.stop = ctx.Event()
        self.out = ctx.SimpleQueue()
        stop_at = time.monotonic() + seconds
        self.procs = [
            ctx.Process(target=client, args=(port, stop_at, self.stop, self.out), daemon=True)
            for _ in range(processes)
        ]
        for proc in self.procs:
            proc.start()

    def finish(self) -> list[Record]:
        self.stop.set()
        records: list[Record] = []
        for _ in self.procs:
            records.extend(self.out.get())
        for proc in self.procs:
            proc.join(REQUEST_TIMEOUT + 5)
        return records


# -- the server ---------------------------------------------------------------------------------


class Pool(Proc):
    """``prefork serve`` of the HTTP hello app (scripts/procs.py), ready once ``workers``
    children exist and a request succeeds; its output goes to ``log``."""

    def __init__(self, workers: int, log: Path) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "prefork", "serve", APP, "-b", f"{HOST}:{self.port}"]
        super().__init__([*argv, "-w", str(workers)], log=log, name="prefork")
        self.wait_ready(
            lambda: len(self.children()) >= workers and not one_request(self.port), READY_TIMEOUT
        )

    def worker_pids(self) -> list[int]:
        return [child.pid for child in self.children()]

    def cleanup(self) -> None:
        """Leave nothing behind: TERM, the group killed after a deadline, then any worker ever
        seen."""
        self.stop(timeout=10.0)


# -- phases -------------------------------------------------------------------------------------


@dataclass
class WorkerChaos:
    duration_s: float
    interval_ms: float
    workers: int
    killed: int = 0
    sent: int = 0
    ok: int = 0
    failed: int = 0
    explained: int = 0
    unexplained: int = 0
    failures_by_error: dict[str, int] = field(default_factory=dict)
    min_pool_seen: int = 0
    replacements_logged: int = 0
    passed: bool = False


def explain(records: list[Record], kills: list[float]) -> tuple[int, int]:
    """Match failures to kills that happened while they were in flight, one failure per kill
    (earliest-ending failure first, to its earliest eligible kill)."""
    failures = sorted((r for r in records if r[2]), key=lambda r: r[1])
    free = sorted(kills)
    explained = 0
    for start, end, _error in failures:
        match = next((k for k in free if start <= k <= end), None)
        if match is not None:
            free.remove(match)
            explained += 1
    return explained, len(failures) - explained


def kill_workers(args: argparse.Namespace, tmp: Path) -> WorkerChaos:
    pool = Pool(args.workers, tmp / "workers.log")
    result = WorkerChaos(args.duration, args.interval * 1000, args.workers)
    kills: list[float] = []
    rng = random.Random(args.seed)
    try:
        load = Load(pool.port, args.clients, args.duration + 1.0)
        time.sleep(0.5)  # load running before the first kill
        end = time.monotonic() + args.duration
        next_kill = time.monotonic()
        pool_sizes = []
        while next_kill < end:
            time.sleep(max(0.0, next_kill - time.monotonic()))  # the kill schedule
            live = pool.worker_pids()
            pool_sizes.append(len(live))
            if live:
                victim = rng.choice(live)
                with contextlib.suppress(ProcessLookupError):
                    kills.append(time.monotonic())
                    os.kill(victim, signal.SIGKILL)
            next_kill += args.interval
        records = load.finish()
    finally:
        pool.cleanup()
    result.killed = len(kills)
    result.sent = len(records)
    result.failed = sum(1 for r in records if r[2])
    result.ok = result.sent - result.failed
    for _s, _e, error in records:
        if error:
            result.failures_by_error[error] = result.failures_by_error.get(error, 0) + 1
    result.explained, result.unexplained = explain(records, kills)
    result.min_pool_seen = min(pool_sizes) if pool_sizes else 0
    result.replacements_logged = pool.text().count("replacing it")
    result.passed = result.failed <= result.killed and result.unexplained == 0
    return result


def kill_master(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    pool = Pool(args.workers, tmp / "master.log")
    try:
        load = Load(pool.port, args.clients, 10.0)
        time.sleep(1.0)  # load running before the kill
        workers = pool.worker_pids()
        pidfds = {pid: os.pidfd_open(pid) for pid in workers}
        start = time.monotonic()
        os.kill(pool.pid, signal.SIGKILL)
        pending = dict(pidfds)
        gone_at: dict[int, float] = {}
        deadline = start + 5.0
        while pending and time.monotonic() < deadline:
            ready, _, _ = select.select(list(pending.values()), [], [], 0.5)
            for fd in ready:
                pid = next(p for p, f in pending.items() if f == fd)
                gone_at[pid] = time.monotonic() - start
                del pending[pid]
        for fd in pidfds.values():
            os.close(fd)
        pool.wait(5)
        time.sleep(0.3)  # let the clients see the server gone
        records = load.finish()
    finally:
        pool.cleanup()
    before = [r for r in records if r[0] < start]
    in_flight_failed = sum(1 for r in before if r[2] and r[1] >= start)
    return {
        "workers": len(workers),
        "workers_gone": len(gone_at),
        "orphans": len(workers) - len(gone_at),
        "last_worker_gone_ms": round(max(gone_at.values()) * 1000, 2) if gone_at else None,
        "requests_before_kill": len(before),
        "failed_before_kill": sum(1 for r in before if r[2] and r[1] < start),
        "in_flight_failed_at_kill": in_flight_failed,
        "sent_after_kill": sum(1 for r in records if r[0] >= start),
        "failed_after_kill": sum(1 for r in records if r[0] >= start and r[2]),
        "passed": len(gone_at) == len(workers),
    }


def reload_chaos(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Repeated SIGHUP under load -- only meaningful once SIGHUP starts a new generation."""
    pool = Pool(args.workers, tmp / "reload.log")
    try:
        old = set(pool.worker_pids())
        os.kill(pool.pid, signal.SIGHUP)

        def replaced() -> bool:
            now = set(pool.worker_pids())
            return len(now) >= args.workers and not (now & old)

        try:
            wait_for(replaced, 5.0, 0.05, "a new generation")
        except TimeoutError:
            return {
                "implemented": False,
                "master_survived": pool.returncode is None,
                "note": "not yet measurable: reload not implemented",
            }
        load = Load(pool.port, args.clients, args.duration + 1.0)
        hups = 0
        end = time.monotonic() + args.duration
        while time.monotonic() < end:
            time.sleep(0.5)  # the pace of the HUPs
            os.kill(pool.pid, signal.SIGHUP)
            hups += 1
        records = load.finish()
    finally:
        pool.cleanup()
    failed = sum(1 for r in records if r[2])
    return {
        "implemented": True,
        "sighups": hups,
        "sent": len(records),
        "failed": failed,
        "passed": failed == 0,
    }


# -- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Kill prefork workers (and the master) under load; report every failure."
    )
    parser.add_argument("--quick", action="store_true", help="5 s of worker kills")
    parser.add_argument(
        "-d", "--duration", type=float, default=None, help="seconds of worker kills (30; --quick 5)"
    )
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between kills")
    parser.add_argument("-w", "--workers", type=int, default=2, help="pool size (2)")
    parser.add_argument("--clients", type=int, default=4, help="client processes (4)")
    parser.add_argument("--seed", type=int, default=None, help="random seed for the victims")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    args.duration = args.duration or (5.0 if args.quick else 30.0)
    with tempfile.TemporaryDirectory(prefix="prefork-chaos-") as tmpdir:
        tmp = Path(tmpdir)
        print(
            f"killing a random worker every {args.interval * 1000:.0f} ms for "
            f"{args.duration:.0f} s ({args.workers} workers, {args.clients} clients)...",
            flush=True,
        )
        workers = kill_workers(args, tmp)
        print(json.dumps(asdict(workers), indent=1), flush=True)
        print("killing the master under load...", flush=True)
        master = kill_master(args, tmp)
        print(json.dumps(master, indent=1), flush=True)
        print("repeated SIGHUP under load...", flush=True)
        reload = reload_chaos(args, tmp)
        print(json.dumps(reload, indent=1), flush=True)
    print()
    print(
        f"workers: {workers.sent} sent, {workers.failed} failed, {workers.killed} killed, "
        f"{workers.explained} explained, {workers.unexplained} unexplained (lost) -> "
        f"{'PASS' if workers.passed else 'FAIL'}"
    )
    print(
        f"master: {master['workers_gone']}/{master['workers']} workers gone in "
        f"{master['last_worker_gone_ms']} ms, {master['orphans']} orphans -> "
        f"{'PASS' if master['passed'] else 'FAIL'}"
    )
    print(f"reload: {reload.get('note') or ('PASS' if reload['passed'] else 'FAIL')}")
    if args.json:
        args.json.write_text(
            json.dumps({"workers": asdict(workers), "master": master, "reload": reload}, indent=1)
        )
    if not (workers.passed and master["passed"]):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
