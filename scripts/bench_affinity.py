"""What ``--cpu-affinity`` does to the CPU-bound benchmark: prefork with and without it, side by
side, alternating rounds (so drift on a shared machine hits both alike).

Run from the repository root (needs ``wrk``)::

    python scripts/bench_affinity.py                      # 6 rounds x 5 s, workers = CPUs
    python scripts/bench_affinity.py --rounds 10 --duration 8 --connections 16 --json out.json

Each round starts ``prefork serve workers.cpu:Burn`` (about 4 ms of pure Python per request)
once plain and once with ``--cpu-affinity`` (the order flips every round), warms it up, drives
it with ``wrk`` and stops it.  Reported: requests/s and p99 of each, the ratio pinned/plain per
round and its median, and the workers' CPU migrations per 1000 requests (``se.nr_migrations`` of
``/proc/PID/sched``, where the kernel has it) -- the mechanism pinning is meant to remove.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_contenders import WORKLOADS, Server, contender_argv, running
from bench_load import run_wrk
from procs import free_port

VARIANTS = ("plain", "pinned")


def migrations(pid: int) -> int | None:
    """How often the kernel moved ``pid`` to another CPU (None: not reported here)."""
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/sched") as fh:
        for line in fh:
            if line.startswith("se.nr_migrations"):
                return int(line.split(":")[1])
    return None


def one(variant: str, rnd: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    work = WORKLOADS["cpu"]
    port = free_port()
    argv = contender_argv("prefork", work, port, args.workers)
    if variant == "pinned":
        argv.append("--cpu-affinity")
    server = Server(variant, argv, port, work.load, args.workers, tmp / f"{variant}-{rnd}.log")
    with running(server):
        run_wrk(port, args.warmup, args.connections)
        pids = [child.pid for child in server.children()]
        before = [migrations(pid) for pid in pids]
        res = run_wrk(port, args.duration, args.connections)
        after = [migrations(pid) for pid in pids]
    moved = None
    if all(n is not None for n in before + after):
        moved = sum(a - b for a, b in zip(after, before, strict=True))  # type: ignore[operator]
    per_k = 1000.0 * moved / res["requests"] if moved is not None and res["requests"] else None
    shown = "n/a" if per_k is None else f"{per_k:.1f}"
    load = os.getloadavg()[0]  # other tenants of a shared machine show here
    print(f"  round {rnd} {variant:6}: {res['rps']:8.1f} req/s  p99 {res['p99_ms']:7.1f} ms  "
          f"errors {res['errors']}  migrations/1000 req {shown}  loadavg {load:.2f}", flush=True)
    return {"variant": variant, "round": rnd, "rps": res["rps"], "p99_ms": res["p99_ms"],
            "errors": res["errors"], "migrations_per_1000": per_k, "loadavg": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-w", "--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="workers (default: usable CPUs)")
    parser.add_argument("-r", "--rounds", type=int, default=6)
    parser.add_argument("-d", "--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each run")
    parser.add_argument("-c", "--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--json", type=Path, help="write the samples here")
    args = parser.parse_args()
    print(f"CPU-bound, {args.workers} workers on {len(os.sched_getaffinity(0))} usable CPUs, "
          f"{args.rounds} rounds x {args.duration:.0f} s, wrk -c{args.connections}", flush=True)
    samples = []
    with tempfile.TemporaryDirectory(prefix="bench-affinity-") as tmp:
        for rnd in range(1, args.rounds + 1):
            order = VARIANTS if rnd % 2 else VARIANTS[::-1]
            samples += [one(variant, rnd, args, Path(tmp)) for variant in order]
    by = {(s["variant"], s["round"]): s for s in samples}
    ratios = [by["pinned", r]["rps"] / by["plain", r]["rps"]
              for r in range(1, args.rounds + 1) if by["plain", r]["rps"]]
    p99 = [by["pinned", r]["p99_ms"] / by["plain", r]["p99_ms"]
           for r in range(1, args.rounds + 1) if by["plain", r]["p99_ms"]]
    summary = {
        variant: {"median_rps": statistics.median(s["rps"] for s in samples
                                                  if s["variant"] == variant),
                  "median_p99_ms": statistics.median(s["p99_ms"] for s in samples
                                                     if s["variant"] == variant)}
        for variant in VARIANTS
    }
    print(f"pinned/plain req/s per round: {', '.join(f'{r:.3f}' for r in ratios)}")
    print(f"median ratio req/s {statistics.median(ratios):.3f} (min {min(ratios):.3f}, "
          f"max {max(ratios):.3f}); median ratio p99 {statistics.median(p99):.3f}")
    for variant, figures in summary.items():
        print(f"  {variant:6}: median {figures['median_rps']:.1f} req/s, "
              f"p99 {figures['median_p99_ms']:.1f} ms")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "samples": samples, "ratios": ratios,
                                         "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()
