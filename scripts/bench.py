"""Side-by-side benchmark of prefork against a bare floor, gunicorn and the stdlib servers.

Run from the repository root::

    python scripts/bench.py                 # default run, a few minutes
    python scripts/bench.py --quick         # short smoke (~2 minutes on 2 CPUs)
    python scripts/bench.py --rounds 3 --duration 10 --chart docs/benchmarks.png

Every contender is started on loopback, warmed up, driven by the same client, and stopped, in
one run; rounds rotate the order so that drift on a shared machine hits everyone alike.  The
numbers that matter are the ratios to prefork in the same run, not the absolute figures.

HTTP load comes from ``wrk`` (``apt-get install wrk``); raw TCP and UDP echo load from
``scripts/echo_load.py``.  Per-worker memory needs ``psutil``; the chart needs ``matplotlib``.

Contenders (same worker count): ``prefork``; ``floor``, the bare fork-and-accept loop of
``scripts/bare_floor.py`` running the same handler class; ``gunicorn`` sync workers serving the
equivalent WSGI app; ``uwsgi`` (the ``pyuwsgi`` package, compiled C: the reference for the WSGI
workloads); the stdlib ``sync``, ``thread`` and ``fork`` servers (``prefork serve --mode``) with
the same handler.  Workloads ``wsgi`` and ``wsgi-close`` are issue 10's WSGI comparison (``wrk
-t2 -c32``, keep-alive, and ``Connection: close``), ``wsgi-tls`` and ``wsgi-tls-close`` the
same over HTTPS (a self-signed certificate made with openssl); ``raw`` is the minimal raw
handler, whose server CPU per request ``scripts/bench_cpu.py`` measures.

Operations measured on prefork (gunicorn alongside for context): respawn-to-accepting after
SIGKILL of a worker, SIGTERM-to-exit of an idle server, wake-ups per second of an idle master,
throughput during repeated SIGHUP reloads, and spurious wake-ups per accepted connection with 8
workers (parsed from the workers' debug exit lines).

This file is the command line; the work is in modules next to it: ``bench_contenders.py``
(workloads, contenders, starting one), ``bench_load.py`` (wrk, the echo clients),
``bench_throughput.py`` (the throughput runs and their medians), ``bench_ops.py`` (the
operations above) and ``bench_report.py`` (machine, tables, chart).  Every server is started,
waited for and stopped through ``procs.py``, the process helper the tests and chaos.py use too.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_contenders import WORKLOADS
from bench_ops import cpu_ceiling, run_operations
from bench_report import chart, machine, markdown
from bench_throughput import run_workloads, summarize

# -- main ---------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark prefork against a bare fork-and-accept floor, gunicorn sync and "
        "the stdlib servers, side by side on loopback.",
    )
    parser.add_argument("--quick", action="store_true", help="short smoke (~2 min on 2 CPUs)")
    parser.add_argument("-w", "--workers", type=int, default=2, help="workers per pool (2)")
    parser.add_argument(
        "-d",
        "--duration",
        type=float,
        default=None,
        help="seconds of load per contender (5; --quick 2)",
    )
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds (1)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds per workload, order rotated; medians reported (1)",
    )
    parser.add_argument("-c", "--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument(
        "--clients", type=int, default=2, help="client processes for TCP/UDP echo load (2)"
    )
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated subset of {','.join(WORKLOADS)}",
    )
    parser.add_argument(
        "--contenders",
        default="prefork,floor,gunicorn,uwsgi,sync,thread,fork",
        help="comma-separated subset of contenders",
    )
    parser.add_argument("--no-ops", action="store_true", help="skip the operations")
    parser.add_argument("--repeats", type=int, default=None, help="respawn kills (10; quick 5)")
    parser.add_argument(
        "--idle-seconds", type=float, default=None, help="idle window for wake-ups (10; quick 4)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=Path("bench-results.json"),
        help="where to write the results (bench-results.json)",
    )
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables here")
    parser.add_argument("--chart", type=Path, default=None, help="write a PNG chart here")
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="do not run: redo the tables/chart from an earlier JSON file",
    )
    args = parser.parse_args()
    quick = args.quick
    args.duration = args.duration or (2.0 if quick else 5.0)
    args.warmup = (0.5 if quick else 1.0) if args.warmup is None else args.warmup
    args.repeats = args.repeats or (5 if quick else 10)
    args.idle_seconds = args.idle_seconds or (4.0 if quick else 10.0)
    args.workloads = [w for w in args.workloads.split(",") if w]
    args.contenders = [c for c in args.contenders.split(",") if c]
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    return args


def main() -> None:
    args = parse_args()
    if args.from_json:
        data = json.loads(args.from_json.read_text())
    else:
        with tempfile.TemporaryDirectory(prefix="prefork-bench-") as tmpdir:
            tmp = Path(tmpdir)
            start = time.monotonic()
            samples = run_workloads(args, tmp)
            ops = {} if args.no_ops else run_operations(args, tmp)
            if "cpu" in args.workloads:
                ops["cpu_ceiling"] = cpu_ceiling()
                print(f"  cpu workload ceiling: {ops['cpu_ceiling']}", flush=True)
            config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
            data = {
                "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
                "machine": machine(),
                "config": config,
                "results": summarize(samples),
                "operations": ops,
                "samples": [asdict(s) for s in samples],
                "elapsed_s": round(time.monotonic() - start, 1),
            }
        args.json.write_text(json.dumps(data, indent=1, default=str))
        print(f"results written to {args.json} ({data['elapsed_s']} s)")
    text = markdown(data)
    print()
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.chart:
        chart(data, args.chart)


if __name__ == "__main__":
    main()
