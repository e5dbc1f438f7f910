"""Operations measured on prefork (gunicorn alongside for context): respawn-to-accepting after
SIGKILL of a worker, SIGTERM-to-exit of an idle server, idle wake-ups of the master and the
workers, throughput during repeated SIGHUP reloads, spurious wake-ups per accepted connection,
and the CPU ceiling of the CPU-bound workload.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import select
import signal
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from bench_contenders import WORKLOADS, Server, contender_argv, http_get, running
from bench_load import run_wrk
from procs import ROOT, free_port, wait_for

EXIT_LINE = re.compile(
    r"worker (\d+) \(pid (\d+)\) exiting \(([^)]*)\): (\d+) requests, (\d+) empty accepts"
)

HELLO = WORKLOADS["http"]


def pool_server(name: str, workers: int, tmp: Path, tag: str, debug: bool = False) -> Server:
    port = free_port()
    return Server(
        name,
        contender_argv(name, HELLO, port, workers, debug=debug),
        port,
        "wrk",
        workers,
        tmp / f"ops-{tag}-{name}.log",
    )


def one_worker(server: Server, timeout: float = 5.0) -> list[psutil.Process]:
    """The pool's children once there is exactly one (waited for up to ``timeout``)."""
    with contextlib.suppress(TimeoutError):
        return wait_for(
            lambda: (kids := server.children()) and len(kids) == 1 and kids,
            timeout,
            what="one worker",
        )
    return server.children()


def respawn_times(name: str, repeats: int, tmp: Path) -> list[float]:
    """1-worker pool: SIGKILL the worker, wait until it is gone (pidfd), then time until a
    request is answered -- the connection waits in the backlog until a new worker accepts."""
    times: list[float] = []
    with running(pool_server(name, 1, tmp, "respawn")) as server:
        for _ in range(repeats):
            children = one_worker(server)
            if len(children) != 1:
                continue
            worker = children[0].pid
            pidfd = os.pidfd_open(worker)
            try:
                start = time.monotonic()
                os.kill(worker, signal.SIGKILL)
                select.select([pidfd], [], [], 5)
                http_get(server.port, timeout=10)
                times.append(time.monotonic() - start)
            finally:
                os.close(pidfd)
            # Let the new worker finish booting before the next round: it answered, so it
            # exists; the fixed gap keeps the next kill off a worker still settling in.
            one_worker(server)
            time.sleep(0.1)
    return times


def idle_stop_times(name: str, workers: int, repeats: int, tmp: Path) -> list[float]:
    times = []
    for i in range(repeats):
        server = pool_server(name, workers, tmp, f"stop{i}")
        server.wait_ready(server.ready)
        time.sleep(0.5)  # idle: no request in flight, workers waiting in accept
        times.append(server.stop())
    return times


def ctx_switches(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        text = fh.read()
    return sum(int(v) for v in re.findall(r"(?:non)?voluntary_ctxt_switches:\s+(\d+)", text))


def idle_wakeups(name: str, workers: int, seconds: float, tmp: Path) -> dict[str, float]:
    """Context switches per second of the master (and mean per worker) over an idle window,
    read from /proc/PID/status; each sleep-wake cycle costs one voluntary switch."""
    with running(pool_server(name, workers, tmp, "idle")) as server:
        time.sleep(1.0)  # a gap on purpose: boot-time activity settles before the window
        kids = [c.pid for c in server.children()]
        m0, w0 = ctx_switches(server.pid), [ctx_switches(p) for p in kids]
        time.sleep(seconds)  # the idle window being measured
        m1, w1 = ctx_switches(server.pid), [ctx_switches(p) for p in kids]
    per_worker = [(b - a) / seconds for a, b in zip(w0, w1, strict=True)]
    return {
        "master_per_s": (m1 - m0) / seconds,
        "worker_per_s_mean": statistics.mean(per_worker) if per_worker else float("nan"),
    }


def reload_probe(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Does SIGHUP start a new generation?  If so, compare throughput during reloads."""
    with running(pool_server("prefork", args.workers, tmp, "reload-probe")) as server:
        old = {c.pid for c in server.children()}
        os.kill(server.pid, signal.SIGHUP)

        def new_generation() -> bool:
            now = {c.pid for c in server.children()}
            return len(now - old) >= args.workers and not (now & old)

        replaced = True
        try:
            wait_for(new_generation, 5, 0.05, "a new generation")
        except TimeoutError:
            replaced = False
        alive = server.returncode is None
    if not replaced:
        return {
            "implemented": False,
            "master_survived_sighup": alive,
            "note": "not yet measurable: reload not implemented",
        }
    with running(pool_server("prefork", args.workers, tmp, "reload-steady")) as server:
        steady = run_wrk(server.port, args.duration, args.connections)
    with running(pool_server("prefork", args.workers, tmp, "reload-hup")) as server:
        stop = threading.Event()
        hups = 0

        def hupper() -> None:
            nonlocal hups
            while not stop.wait(args.duration / 5):
                os.kill(server.pid, signal.SIGHUP)
                hups += 1

        thread = threading.Thread(target=hupper, daemon=True)
        thread.start()
        during = run_wrk(server.port, args.duration, args.connections)
        stop.set()
        thread.join()
    return {
        "implemented": True,
        "steady_rps": steady["rps"],
        "reload_rps": during["rps"],
        "ratio": during["rps"] / steady["rps"] if steady["rps"] else None,
        "sighups": hups,
        "errors_during": during["errors"],
    }


def spurious_wakeups(workers: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    server = pool_server("prefork", workers, tmp, f"spurious{workers}", debug=True)
    with running(server):
        run_wrk(server.port, args.warmup, args.connections)
        res = run_wrk(server.port, args.duration, args.connections)
        server.stop()
    rows = [tuple(map(int, (m[0], m[1], m[3], m[4]))) for m in EXIT_LINE.findall(server.log_text())]
    requests = sum(r[2] for r in rows)
    empty = sum(r[3] for r in rows)
    return {
        "workers": workers,
        "workers_reporting": len(rows),
        "requests": requests,
        "empty_accepts": empty,
        "per_accept": empty / requests if requests else None,
        "per_worker_requests": sorted(r[2] for r in rows),
        "rps": res["rps"],
    }


def run_operations(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    ops: dict[str, Any] = {}
    others = ["gunicorn"] if "gunicorn" in args.contenders else []
    for name in ["prefork", *others]:
        times = respawn_times(name, args.repeats, tmp)
        ops.setdefault("respawn_ms", {})[name] = [round(t * 1000, 2) for t in times]
        print(
            f"  respawn-to-accepting {name}: median {statistics.median(times) * 1000:.1f} ms,"
            f" max {max(times) * 1000:.1f} ms ({len(times)} kills)",
            flush=True,
        )
        stops = idle_stop_times(name, args.workers, max(3, args.repeats // 2), tmp)
        ops.setdefault("idle_stop_ms", {})[name] = [round(t * 1000, 2) for t in stops]
        print(
            f"  idle SIGTERM-to-exit {name}: median {statistics.median(stops) * 1000:.1f} ms,"
            f" max {max(stops) * 1000:.1f} ms",
            flush=True,
        )
        wake = idle_wakeups(name, args.workers, args.idle_seconds, tmp)
        ops.setdefault("idle_wakeups", {})[name] = wake
        print(
            f"  idle wake-ups {name}: master {wake['master_per_s']:.2f}/s, "
            f"worker {wake['worker_per_s_mean']:.2f}/s",
            flush=True,
        )
    ops["reload"] = reload_probe(args, tmp)
    print(f"  reload: {ops['reload']}", flush=True)
    ops["spurious"] = []
    for workers in sorted({args.workers, 8}):
        res = spurious_wakeups(workers, args, tmp)
        ops["spurious"].append(res)
        per = res["per_accept"]
        print(
            f"  spurious wake-ups, {workers} workers: {res['empty_accepts']} empty accepts /"
            f" {res['requests']} requests = {per if per is None else round(per, 4)}"
            f" (per worker {res['per_worker_requests']})",
            flush=True,
        )
    return ops


def cpu_ceiling(repeats: int = 50) -> dict[str, float]:
    """Seconds of CPU one CPU-bound request's work takes here (best of ``repeats``, measured in
    this process while nothing else of ours runs), and the req/s all usable CPUs could give
    with zero server, client and kernel overhead: the physical ceiling of the cpu workload."""
    sys.path.insert(0, str(ROOT))
    from workers.cpu import DEFAULT_N, burn

    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        burn(DEFAULT_N)
        best = min(best, time.process_time() - start)
    cpus = len(os.sched_getaffinity(0))
    return {"burn_ms": best * 1000, "cpus": cpus, "ceiling_rps": cpus / best}
