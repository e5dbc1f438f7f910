"""What the access log costs a WSGI keep-alive workload: the same server with it off and on,
side by side, in alternating rounds.

``python scripts/bench_accesslog.py --rounds 6 --duration 5``

Each round starts ``prefork serve workers.wsgi_hello:app`` twice (one worker each, so its CPU
time is the server's cost), without and with ``--access-logfile`` (a file, gunicorn's default
format), warms both up and drives both at the same time, each with its own ``wrk``
(keep-alive): on a shared machine the other load hits both alike.  Printed: per
round and as medians, requests/s and the worker's CPU (user + sys, and each) per request,
and the ratio on/off of each.  CPU per request is the steadier figure on a shared machine.
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
from concurrent.futures import ThreadPoolExecutor
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


def worker_cpu(master: psutil.Process) -> tuple[float, float]:
    """The workers' user and system CPU seconds."""
    user = system = 0.0
    for child in master.children():
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        user, system = user + times.user, system + times.system
    return user, system


def start(log: Path | None) -> tuple[subprocess.Popen[bytes], psutil.Process, int]:
    port = free_port(socket.SOCK_STREAM)
    argv = [sys.executable, "-m", "prefork", "serve", "workers.wsgi_hello:app", "-b",
            f"127.0.0.1:{port}", "-w", "1", "--log-level", "warning"]
    if log is not None:
        argv += ["--access-logfile", str(log)]
    proc = subprocess.Popen(argv, cwd=ROOT, env=root_env({}), stderr=subprocess.DEVNULL)
    master = psutil.Process(proc.pid)

    def up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return bool(master.children())

    wait_for(up, 15, 0.05, "the server", error=RuntimeError)
    return proc, master, port


def round_(tmp: Path, rnd: int,
           args: argparse.Namespace) -> dict[str, tuple[float, float, float]]:
    """Both servers at once, each under its own wrk: the machine's noise hits both alike."""
    servers = {"off": start(None), "on": start(tmp / f"access-{rnd}.log")}
    try:
        for _, _, port in servers.values():
            wrk(port, 1, args.connections)  # warm-up
        before = {k: worker_cpu(m) for k, (_, m, _) in servers.items()}
        with ThreadPoolExecutor(2) as pool:
            runs = {k: pool.submit(wrk, port, args.duration, args.connections)
                    for k, (_, _, port) in servers.items()}
            done = {k: f.result() for k, f in runs.items()}
        after = {k: worker_cpu(m) for k, (_, m, _) in servers.items()}
        return {k: (done[k][1], (after[k][0] - before[k][0]) / done[k][0] * 1e6,
                    (after[k][1] - before[k][1]) / done[k][0] * 1e6) for k in servers}
    finally:
        for proc, _, _ in servers.values():
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
    ratios = []
    with tempfile.TemporaryDirectory(prefix="prefork-accesslog-") as tmp:
        for rnd in range(args.rounds):
            got = round_(Path(tmp), rnd, args)
            lines = (Path(tmp) / f"access-{rnd}.log").read_text().count("\n")
            for variant, (rps, user, system) in got.items():
                results[variant].append((rps, user + system))
            ratios.append(sum(got["on"][1:]) / sum(got["off"][1:]))
            print(f"round {rnd}: " + " | ".join(
                f"{k} {got[k][0]:7.0f} req/s {got[k][1] + got[k][2]:6.2f} us CPU/req "
                f"(user {got[k][1]:.2f}, sys {got[k][2]:.2f})" for k in ("off", "on"))
                  + f" ({lines} lines) | CPU on/off {ratios[-1]:.3f}", flush=True)
    med = {k: (statistics.median(r for r, _ in v), statistics.median(u for _, u in v))
           for k, v in results.items()}
    print(f"median off: {med['off'][0]:.0f} req/s, {med['off'][1]:.2f} us/request")
    print(f"median on:  {med['on'][0]:.0f} req/s, {med['on'][1]:.2f} us/request")
    print(f"median of the per-round CPU-per-request ratios on/off: {statistics.median(ratios):.3f}"
          f"; throughput ratio of the medians {med['on'][0] / med['off'][0]:.3f}")


if __name__ == "__main__":
    main()
