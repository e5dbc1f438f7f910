"""NULL calls over TCP: a C client built by rpcgen (libtirpc) against the pool, beside the raw
TCP echo of the same pool in the same run.

``python scripts/bench_rpc.py --rounds 3 -d 5 -c 4``

Builds, in a temporary directory, from one ``.x`` file (``PING_PROG``, version 1, its only
procedure ``void PING(void) = 0``: NULL):

* the client: rpcgen's client stub (``rpcgen -l``) and a small loop calling ``ping_1()`` for
  ``--duration`` seconds on one connection (``clnttcp_create``); ``--connections`` of them run
  at once, each its own process;
* the Python server: the same file through ``prefork rpcgen``, served as generated --
  ``prefork serve ping:PING_PROG -w N`` (NULL needs no implementation);
* a C reference server: rpcgen's dispatch function (``rpcgen -m``) under libtirpc's own
  ``svc_run()`` loop, one process (how C RPC services are usually run).

Contenders, in an order that rotates each round: ``prefork`` (N workers), ``prefork-sync``
(``--mode sync``: the stdlib's TCPServer, one process, one connection at a time: the others wait
their turn, so its rate is over the time until the last client is done), ``c-svc`` (the C
server); then the raw
TCP echo of ``workers.echo:LineEcho`` under prefork with ``scripts/echo_load.py tcp`` (one
connection per line), the workload of docs/benchmarks.md.  Per contender: calls per second and
the server's CPU (user+sys of its whole process tree) per call.  Medians over rounds; the load
average before each round says how busy the machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from echo_load import run_load
from procs import ROOT, Proc, free_port, root_env

PROG = 536871066
PING_X = f"program PING_PROG {{ version PING_V1 {{ void PING(void) = 0; }} = 1; }} = {PROG};\n"
CLIENT_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <rpc/rpc.h>
#include "ping.h"

int main(int argc, char **argv) {
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(atoi(argv[1]));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    double seconds = atof(argv[2]);
    int sock = RPC_ANYSOCK;
    CLIENT *clnt = clnttcp_create(&addr, PING_PROG, PING_V1, &sock, 0, 0);
    if (clnt == NULL) { clnt_pcreateerror("create"); return 1; }
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long calls = 0, errors = 0;
    do {
        for (int i = 0; i < 64; i++) {
            if (ping_1(NULL, clnt) == NULL) errors++; else calls++;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 < seconds);
    printf("%ld %ld\n", calls, errors);
    return 0;
}
"""
SERVER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <rpc/rpc.h>
#include "ping.h"

void ping_prog_1(struct svc_req *rqstp, SVCXPRT *transp);

void *ping_1_svc(void *argp, struct svc_req *rqstp) {
    static char result;
    return (void *)&result;
}

int main(int argc, char **argv) {
    int sock = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(atoi(argv[1]));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(sock, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("bind"); return 1; }
    if (listen(sock, 128) < 0) { perror("listen"); return 1; }
    SVCXPRT *xprt = svctcp_create(sock, 0, 0);
    if (xprt == NULL) { fprintf(stderr, "svctcp_create failed\n"); return 1; }
    /* protocol 0: not registered with rpcbind */
    if (!svc_register(xprt, PING_PROG, PING_V1, ping_prog_1, 0)) return 1;
    fprintf(stderr, "c-svc serving\n");
    svc_run();
    return 1;
}
"""
TIRPC = ["-I/usr/include/tirpc"]


def build(tmp: Path) -> None:
    (tmp / "ping.x").write_text(PING_X)
    (tmp / "client.c").write_text(CLIENT_C)
    (tmp / "server.c").write_text(SERVER_C)
    for flag, out in (("-h", "ping.h"), ("-l", "ping_clnt.c"), ("-m", "ping_svc.c")):
        subprocess.run(["rpcgen", flag, "ping.x", "-o", out], cwd=tmp, check=True)
    cc = ["cc", "-O2", "-I.", *TIRPC]
    subprocess.run([*cc, "-o", "client", "client.c", "ping_clnt.c", "-ltirpc"], cwd=tmp,
                   check=True)
    subprocess.run([*cc, "-o", "server", "server.c", "ping_svc.c", "-ltirpc"], cwd=tmp,
                   check=True)
    subprocess.run([sys.executable, "-m", "prefork", "rpcgen", "ping.x"], cwd=tmp, check=True,
                   env=root_env())


def tree_cpu(pid: int) -> float:
    """User+sys seconds of ``pid`` and its live descendants."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            times = proc.cpu_times()
            total += times.user + times.system
    except psutil.Error:
        pass
    return total


def null_load(client: Path, port: int, connections: int,
              duration: float) -> tuple[int, int, float]:
    """Calls, errors, and the seconds from the start until the last client is done (a server
    that serves one connection at a time makes the others wait their turn: longer)."""
    started = time.monotonic()
    procs = [subprocess.Popen([str(client), str(port), str(duration)], stdout=subprocess.PIPE,
                              text=True) for _ in range(connections)]
    calls = errors = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=duration * connections + 60)
        if proc.returncode != 0 or not out.strip():
            raise RuntimeError(f"the NULL client failed (status {proc.returncode})")
        done, failed = map(int, out.split())
        calls, errors = calls + done, errors + failed
    return calls, errors, time.monotonic() - started


def contender(name: str, tmp: Path, port: int, workers: int) -> tuple[list[str], str]:
    """The command and the line it logs once it serves."""
    serve = [sys.executable, "-m", "prefork", "serve", "-b", f"127.0.0.1:{port}",
             "--no-rpcbind", "--log-level", "info"]
    if name == "prefork":
        return [*serve, "ping:PING_PROG", "-w", str(workers)], r"worker \d+ \(pid \d+\) ready"
    if name == "prefork-sync":
        return [*serve, "ping:PING_PROG", "--mode", "sync"], r"serving ping:PING_PROG"
    if name == "c-svc":
        return [str(tmp / "server"), str(port)], r"c-svc serving"
    if name == "echo":
        return [*serve, "workers.echo:LineEcho", "-w", str(workers)], \
            r"worker \d+ \(pid \d+\) ready"
    raise ValueError(name)


def measure(name: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    argv, ready = contender(name, tmp, port, args.workers)
    env = root_env({"PYTHONPATH": f"{tmp}{os.pathsep}{ROOT}"})
    with Proc(argv, env=env, cwd=tmp, name=name) as server:
        server.wait_line(ready, timeout=30)
        if name in ("prefork", "echo"):
            deadline = time.monotonic() + 30
            while len([p for p in server.children() if p.status() != "zombie"]) < args.workers:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: the pool did not fill")
                time.sleep(0.05)
        if name == "echo":
            run_load("tcp", f"127.0.0.1:{port}", args.connections, 1.0)  # warm-up
            before = tree_cpu(server.pid)
            load = run_load("tcp", f"127.0.0.1:{port}", args.connections, args.duration)
            cpu = tree_cpu(server.pid) - before
            calls, errors, seconds = load.requests, load.errors, args.duration
        else:
            null_load(tmp / "client", port, args.connections, 1.0)  # warm-up
            before = tree_cpu(server.pid)
            calls, errors, seconds = null_load(tmp / "client", port, args.connections,
                                               args.duration)
            cpu = tree_cpu(server.pid) - before
        server.stop()
    return {"contender": name, "calls": calls, "errors": errors, "seconds": seconds,
            "per_s": calls / seconds, "us_cpu_per_call": cpu / max(calls, 1) * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-d", "--duration", type=float, default=5.0, help="seconds per load")
    parser.add_argument("-c", "--connections", type=int, default=4,
                        help="client processes, one connection each")
    parser.add_argument("-w", "--workers", type=int, default=2)
    parser.add_argument("--contenders", default="prefork,prefork-sync,c-svc,echo")
    parser.add_argument("--json", default=None, metavar="PATH", help="write every round here")
    args = parser.parse_args()
    missing = [tool for tool in ("rpcgen", "cc") if shutil.which(tool) is None]
    if missing or not Path("/usr/include/tirpc/rpc/rpc.h").exists():
        sys.exit(f"bench_rpc: needs rpcgen, cc and libtirpc-dev (missing: {missing})")
    names = args.contenders.split(",")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-rpc-") as folder:
        tmp = Path(folder)
        build(tmp)
        for rnd in range(args.rounds):
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            load = os.getloadavg()[0]
            for name in order:
                row = measure(name, tmp, args)
                row.update(round=rnd + 1, loadavg=load)
                rows.append(row)
                print(f"round {rnd + 1} (load {load:.2f}) {name:13s} {row['per_s']:9.0f}/s "
                      f"{row['us_cpu_per_call']:7.1f} us CPU/call  errors {row['errors']}",
                      flush=True)
    print()
    print(f"median of {args.rounds} rounds, {args.connections} connections, "
          f"{args.workers} workers, {args.duration:g} s each")
    print("| contender | calls/s | vs prefork | us server CPU per call | errors |")
    print("|---|---:|---:|---:|---:|")
    base = statistics.median(r["per_s"] for r in rows if r["contender"] == "prefork") \
        if "prefork" in names else 0
    for name in names:
        mine = [r for r in rows if r["contender"] == name]
        rate = statistics.median(r["per_s"] for r in mine)
        cpu = statistics.median(r["us_cpu_per_call"] for r in mine)
        ratio = f"{rate / base:.2f}x" if base else "-"
        print(f"| {name} | {rate:.0f} | {ratio} | {cpu:.1f} | {sum(r['errors'] for r in mine)} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
