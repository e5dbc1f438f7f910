"""Idle TERM: a pool of 2 idle workers gets SIGTERM; the time until the master has exited.

    python scripts/bench_idle_term.py [--rounds 15] [--app prefork.demo:DemoHandler]

Each round starts ``prefork serve APP --workers 2``, waits until both workers reported ready,
sends TERM and waits on a pidfd for the master's exit (procs.Proc.stop).  Prints the median,
the minimum and the maximum, in milliseconds.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys

from procs import Proc, root_env, wait_for

READY = re.compile(r"worker \d+ \(pid \d+\) ready")


def idle_term(app: str = "prefork.demo:DemoHandler", workers: int = 2) -> float:
    """Seconds from TERM to the master's exit, for a pool of ``workers`` idle workers."""
    argv = [sys.executable, "-m", "prefork", "serve", app, "--bind", "127.0.0.1:0",
            "--workers", str(workers)]
    proc = Proc(argv, env=root_env({}), name="idle-term")

    def ready() -> bool:
        proc.text()  # (collects the lines read so far)
        return sum(bool(READY.search(line)) for line in proc.lines) >= workers

    try:
        wait_for(ready, timeout=30, what=f"{workers} ready workers")
        return proc.stop()
    finally:
        proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--app", default="prefork.demo:DemoHandler")
    args = parser.parse_args()
    times = [idle_term(args.app) * 1000 for _ in range(args.rounds)]
    print(f"idle TERM, 2 workers, {args.rounds} rounds: median {statistics.median(times):.1f} ms,"
          f" min {min(times):.1f}, max {max(times):.1f}")


if __name__ == "__main__":
    main()
