"""What the access log costs a WSGI keep-alive workload: the same server with it off and on,
side by side, in alternating rounds.

``python scripts/bench_accesslog.py --rounds 6 --duration 5``

Each round starts ``prefork serve workers.wsgi_hello:app`` (one worker, so its CPU time is the
server's cost) without and with ``--access-logfile`` (a file, gunicorn's default format), in
an order that alternates, warms it up, and drives it with ``wrk`` (keep-alive).  Printed: per
round and as medians, requests/s and the worker's CPU (user + sys) per request, and the ratio
on/off of each.  CPU per request is the steadier figure on a shared machine.
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from procs import free_port, root_env, wait_for  # noqa: E402


def wrk(port: int, seconds: float, connections: int) -> tuple[int, float]:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                         check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return requests, rps


def worker_cpu(master: psutil.Process) -> float:
    total = 0.0
    for child in master.children():
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def one(log: Path | None, args: argparse.Namespace) -> tuple[float, float]:
    port = free_port(socket.SOCK_STREAM)
    argv = [sys.executable, "-m", "prefork", "serve", "workers.wsgi_hello:app", "-b",
            f"127.0.0.1:{port}", "-w", "1", "--log-level", "warning"]
    if log is not None:
        argv += ["--access-logfile", str(log)]
    proc = subprocess.Popen(argv, cwd=ROOT, env=root_env({}), stderr=subprocess.DEVNULL)
    try:
        master = psutil.Process(proc.pid)

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return False
            return bool(master.children())

        wait_for(up, 15, 0.05, "the server", error=RuntimeError)
        wrk(port, 1, args.connections)  # warm-up
        before = worker_cpu(master)
        requests, rps = wrk(port, args.duration, args.connections)
        cpu = worker_cpu(master) - before
        return rps, cpu / requests * 1e6
    finally:
        proc.terminate()
        proc.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("-d", "--duration", type=float, default=5.0)
    parser.add_argument("-c", "--connections", type=int, default=8)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench_accesslog: needs wrk (apt-get install wrk)")
    results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="prefork-accesslog-") as tmp:
        for rnd in range(args.rounds):
            order = ("off", "on") if rnd % 2 == 0 else ("on", "off")
            for variant in order:
                log = Path(tmp) / f"access-{rnd}.log" if variant == "on" else None
                rps, us = one(log, args)
                results[variant].append((rps, us))
                lines = log.read_text().count("\n") if log is not None else 0
                print(f"round {rnd} {variant:>3}: {rps:9.0f} req/s  {us:6.2f} us CPU/request"
                      + (f"  ({lines} lines)" if log is not None else ""), flush=True)
                time.sleep(0.2)
    med = {k: (statistics.median(r for r, _ in v), statistics.median(u for _, u in v))
           for k, v in results.items()}
    print(f"median off: {med['off'][0]:.0f} req/s, {med['off'][1]:.2f} us/request")
    print(f"median on:  {med['on'][0]:.0f} req/s, {med['on'][1]:.2f} us/request")
    print(f"on/off: throughput {med['on'][0] / med['off'][0]:.3f}, "
          f"CPU per request {med['on'][1] / med['off'][1]:.3f}")


if __name__ == "__main__":
    main()
