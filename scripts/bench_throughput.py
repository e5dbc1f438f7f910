"""Throughput runs: every contender of every workload under the same load, rounds in rotated
order, and the medians with their ratio to prefork.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from bench_contenders import POOLS, WORKLOADS, Server, Workload, contender_argv, running
from bench_load import drive, listen_overflows
from procs import free_port

PRELOAD_REQUESTS = 10_000


def uss_mb(proc: psutil.Process) -> float:
    return proc.memory_full_info().uss / 2**20


# -- throughput runs ----------------------------------------------------------------------------


@dataclass
class Sample:
    workload: str
    contender: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    listen_overflows: int
    extra: dict[str, Any] = field(default_factory=dict)


def measure_one(work: Workload, name: str, rnd: int, args: argparse.Namespace, tmp: Path) -> Sample:
    port = free_port(socket.SOCK_DGRAM if work.load == "udp" else socket.SOCK_STREAM)
    pool = name in POOLS
    server = Server(
        name,
        contender_argv(name, work, port, args.workers),
        port,
        work.load,
        args.workers if pool else 0,
        tmp / f"{work.key}-{name}-{rnd}.log",
    )
    with running(server):
        served = 0
        if args.warmup > 0:
            served += drive(work.load, port, args.warmup, args).get("requests", 0)
        before = listen_overflows()
        res = drive(work.load, port, args.duration, args)
        overflows = listen_overflows() - before
        served += res["requests"]
        extra: dict[str, Any] = {}
        if work.key == "preload":
            while served < PRELOAD_REQUESTS:
                served += drive(work.load, port, 1.0, args)["requests"]
            extra["requests_before_uss"] = served
            if pool:
                uss = [uss_mb(child) for child in server.children()]
                extra["worker_uss_mb"] = [round(u, 1) for u in uss]
            with contextlib.suppress(psutil.Error):
                master = psutil.Process(server.pid)
                extra["master_uss_mb"] = round(uss_mb(master), 1)
                extra["master_rss_mb"] = round(master.memory_info().rss / 2**20, 1)
    sample = Sample(
        work.key,
        name,
        rnd,
        res["rps"],
        res["p50_ms"],
        res["p99_ms"],
        res["errors"],
        res["requests"],
        overflows,
        extra,
    )
    print(
        f"  {work.key:8} {name:17} round {rnd}: {sample.rps:9.0f} req/s  p50 {sample.p50_ms:7.2f}"
        f" ms  p99 {sample.p99_ms:8.2f} ms  errors {sample.errors}  overflows {overflows}"
        + (f"  {extra}" if extra else ""),
        flush=True,
    )
    return sample


def run_workloads(args: argparse.Namespace, tmp: Path) -> list[Sample]:
    samples: list[Sample] = []
    for key in args.workloads:
        work = WORKLOADS[key]
        contenders = [
            c
            for c in work.contenders
            if c in args.contenders or (c == "gunicorn-preload" and "gunicorn" in args.contenders)
        ]
        print(f"{work.title}: {', '.join(contenders)}", flush=True)
        for rnd in range(args.rounds):
            shift = rnd % len(contenders)
            for name in contenders[shift:] + contenders[:shift]:
                try:
                    samples.append(measure_one(work, name, rnd, args, tmp))
                except (RuntimeError, subprocess.SubprocessError) as exc:
                    print(f"  {key} {name}: FAILED: {exc}", flush=True)
    return samples


def summarize(samples: list[Sample]) -> dict[str, dict[str, dict[str, Any]]]:
    """Median per (workload, contender), and the ratio to prefork in the same workload."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for s in samples:
        table.setdefault(s.workload, {}).setdefault(s.contender, {"runs": []})["runs"].append(s)
    for rows in table.values():
        for row in rows.values():
            runs: list[Sample] = row.pop("runs")
            row["rps"] = statistics.median(r.rps for r in runs)
            row["p50_ms"] = statistics.median(r.p50_ms for r in runs)
            row["p99_ms"] = statistics.median(r.p99_ms for r in runs)
            row["errors"] = sum(r.errors for r in runs)
            row["listen_overflows"] = sum(r.listen_overflows for r in runs)
            row["rounds"] = len(runs)
            row["rps_runs"] = [round(r.rps, 1) for r in runs]
            uss = [u for r in runs for u in r.extra.get("worker_uss_mb", [])]
            if uss:
                row["worker_uss_mb_mean"] = round(statistics.mean(uss), 1)
                row["worker_uss_mb_max"] = round(max(uss), 1)
            masters = [r.extra["master_uss_mb"] for r in runs if "master_uss_mb" in r.extra]
            if masters:
                row["master_uss_mb"] = round(statistics.median(masters), 1)
        base = rows.get("prefork", {}).get("rps")
        for row in rows.values():
            row["vs_prefork"] = row["rps"] / base if base else None
    return table
