"""Server CPU per request: the workers' user+sys CPU time over a load, divided by the requests.

``python scripts/bench_cpu.py --contenders floor,prefork --rounds 3``

Where throughput on a 2-CPU machine mixes the server with the client and the kernel, the CPU the
server's workers burn per request isolates the server's own cost.  Every contender runs the same
handler (``workers.raw_echo:Echo`` by default: recv, sendall, close) under the same load
(``scripts/echo_load.py tcp``: one connection per request), rounds alternate the order, and the
medians and the ratio of the floor's cost to each contender's are printed (>= 0.90 is issue 10's
target for prefork: at most 1.11x the floor's CPU).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_contenders import WORKLOADS, Server, Workload, contender_argv, running
from bench_load import drive
from procs import free_port


def workers_cpu(server: Server) -> tuple[float, float]:
    """User and sys seconds of the server's whole process tree (master and workers), alive
    now."""
    user = system = 0.0
    server.children()  # (remembered, so that the server's stop kills them)
    try:
        tree = [psutil.Process(server.pid), *server.descendants()]
    except psutil.Error:
        tree = server.descendants()
    for child in tree:
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        user += times.user
        system += times.system
    return user, system


def measure(
    work: Workload, name: str, args: argparse.Namespace, tmp: Path, rnd: int
) -> dict[str, Any]:
    port = free_port(socket.SOCK_DGRAM if work.load == "udp" else socket.SOCK_STREAM)
    argv = contender_argv(name, work, port, args.workers)
    server = Server(name, argv, port, work.load, args.workers, tmp / f"{name}-{rnd}.log")
    with running(server):
        drive(work.load, port, args.warmup, args)
        user0, sys0 = workers_cpu(server)
        res = drive(work.load, port, args.duration, args)
        user1, sys1 = workers_cpu(server)
    requests = res["requests"] or 1
    user, system = user1 - user0, sys1 - sys0
    return {"contender": name, "round": rnd, "rps": res["rps"], "requests": res["requests"],
            "errors": res["errors"], "user_s": user, "sys_s": system,
            "us_per_request": (user + system) / requests * 1e6,
            "user_us": user / requests * 1e6, "sys_us": system / requests * 1e6}


def chart(path: Path, title: str, medians: dict[str, float], base: str) -> None:
    """Server CPU per request, one bar per contender, the floor's drawn as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(medians, key=medians.__getitem__)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bars = ax.barh(names, [medians[n] for n in names],
                   color=["#c44" if n == "prefork" else "#888" for n in names])
    ax.bar_label(bars, fmt="%.1f us", padding=3)
    if base in medians:
        ax.axvline(medians[base], color="#44c", linestyle=":", linewidth=1)
    ax.set_xlabel("server CPU per request, us (user + system, whole process tree)")
    ax.set_title(title, fontsize=10)
    ax.set_xlim(0, max(medians.values()) * 1.25)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="raw", choices=sorted(WORKLOADS))
    parser.add_argument("--contenders", default="floor,prefork")
    parser.add_argument("-w", "--workers", type=int, default=2)
    parser.add_argument("-d", "--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2, help="echo client processes")
    parser.add_argument("-c", "--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--chart", type=Path, default=None,
                        help="a bar chart of the medians (PNG; needs matplotlib)")
    parser.add_argument("--floor", default=None,
                        help="the contender the others are compared with (floor, or wsgi-floor "
                        "when it runs)")
    args = parser.parse_args()
    work = WORKLOADS[args.workload]
    names = [c for c in args.contenders.split(",") if c]
    samples = []
    with tempfile.TemporaryDirectory(prefix="prefork-cpu-") as tmpdir:
        for rnd in range(args.rounds):
            shift = rnd % len(names)
            for name in names[shift:] + names[:shift]:
                s = measure(work, name, args, Path(tmpdir), rnd)
                samples.append(s)
                print(f"  {name:10} round {rnd}: {s['rps']:8.0f} req/s  "
                      f"{s['us_per_request']:6.2f} us CPU/request (user {s['user_us']:5.2f}, "
                      f"sys {s['sys_us']:5.2f})  errors {s['errors']}",
                      flush=True)
    medians = {n: statistics.median(s["us_per_request"] for s in samples if s["contender"] == n)
               for n in names}
    # Also the ratio within each round (the floor and the contender ran one after the other),
    # whose median shrugs off a round that a neighbour on the machine made slow for both.
    by_round = {(s["contender"], s["round"]): s["us_per_request"] for s in samples}
    base = args.floor or ("wsgi-floor" if "wsgi-floor" in names else "floor")
    floor = medians.get(base)
    paired = {}
    for n, us in medians.items():
        ratio = ""
        if floor:
            paired[n] = statistics.median(by_round[base, r] / by_round[n, r]
                                          for r in range(args.rounds))
            ratio = (f"  this/{base} {us / floor:.2f}x (median of rounds' ratios "
                     f"{1 / paired[n]:.2f}x)")
        rps = statistics.median(s["rps"] for s in samples if s["contender"] == n)
        print(f"{n:10} median {us:6.2f} us CPU/request {rps:8.0f} req/s{ratio}")
    if args.chart:
        chart(args.chart, work.title, medians, base)
    if args.json:
        args.json.write_text(json.dumps(
            {"command": " ".join(sys.argv), "samples": samples, "medians": medians,
             "paired_ratios": paired}, indent=1))


if __name__ == "__main__":
    main()
