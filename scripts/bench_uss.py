"""Memory per worker with a ~100 MB structure built at import (scripts/bench_preload.py):
unique set size (USS, the memory only that process holds) of each worker after 10 000 requests,
for prefork with and without ``--preload`` beside gunicorn with and without ``--preload``.

    python scripts/bench_uss.py [--requests 10000] [--workers 2]

USS comes from /proc/PID/smaps (psutil ``memory_full_info``), read after the load, when the
pages a worker has written since the fork are its own.  Goal: <= 10 MB per worker with preload.
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import sys
import threading
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procs import Proc, free_port, wait_for

MB = 1024 * 1024


def contenders(port: int, workers: int) -> dict[str, list[str]]:
    bind = f"127.0.0.1:{port}"
    prefork = [sys.executable, "-m", "prefork", "serve", "scripts.bench_preload:wsgi_app",
               "-b", bind, "-w", str(workers), "--log-level", "warning"]
    out = {"prefork": prefork, "prefork --preload": [*prefork, "--preload"]}
    gunicorn = shutil.which("gunicorn") or str(Path(sys.executable).parent / "gunicorn")
    if Path(gunicorn).exists():
        base = [gunicorn, "-b", bind, "-w", str(workers), "--log-level", "warning",
                "scripts.bench_preload:wsgi_app"]
        out["gunicorn"] = base
        out["gunicorn --preload"] = [*base[:-1], "--preload", base[-1]]
    return out


def load(port: int, requests: int, clients: int = 4) -> int:
    done = [0] * clients

    def client(index: int) -> None:
        for _ in range(requests // clients):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/")
            if conn.getresponse().read().endswith(b"entries\n"):
                done[index] += 1
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done)


def answers(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/")
        return conn.getresponse().status == 200
    except OSError:
        return False


def workers_of(master: psutil.Process) -> list[psutil.Process]:
    return [p for p in master.children() if "template" not in " ".join(p.cmdline())]


def measure(name: str, argv: list[str], port: int, workers: int, requests: int) -> dict[str, float]:
    with Proc(argv, name=name) as proc:
        proc.wait_ready(lambda: answers(port), timeout=120)
        master = psutil.Process(proc.pid)
        wait_for(lambda: len(workers_of(master)) == workers, 30, 0.05, "the workers")
        served = load(port, requests)
        pool = workers_of(master)
        uss = [p.memory_full_info().uss / MB for p in pool]
        rss = [p.memory_info().rss / MB for p in pool]
        others = [p for p in master.children() if p not in pool]
        row = {"served": served, "worker_uss": sum(uss) / len(uss),
               "worker_rss": sum(rss) / len(rss),
               "master_uss": master.memory_full_info().uss / MB,
               "template_uss": sum(p.memory_full_info().uss for p in others) / MB}
        proc.stop()
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print("| contender | worker USS MB | worker RSS MB | master USS MB | template USS MB "
          "| requests |\n|---|---|---|---|---|---|")
    for name, argv in contenders(free_port(), args.workers).items():
        port = int(argv[argv.index("-b") + 1].rsplit(":", 1)[1])
        row = measure(name, argv, port, args.workers, args.requests)
        print(f"| {name} | {row['worker_uss']:.1f} | {row['worker_rss']:.1f} "
              f"| {row['master_uss']:.1f} | {row['template_uss']:.1f} | {row['served']:.0f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
