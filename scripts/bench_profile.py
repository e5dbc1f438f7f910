"""Where a worker's time per request goes: cProfile in the worker, calls and time per request.

``python scripts/bench_profile.py [--requests 5000] [--close] [--floor] -- SERVE ARGS...``

The server (``python -m prefork serve SERVE ARGS...``, or ``scripts/wsgi_floor.py`` with
``--floor``) starts with a ``sitecustomize`` on its path that turns cProfile on in every forked
child and writes the child's stats when it calls ``os._exit``; N requests are sent over one
kept-alive connection (``--close``: a connection each, bench_instructions.py's client), the
server is stopped, and the worker's functions are printed by total time, with their calls per
request.  cProfile slows Python calls down: read the calls per request exactly, the times as
shares.
"""

from __future__ import annotations

import argparse
import os
import pstats
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from bench_instructions import drive  # noqa: E402
from procs import free_port, root_env, wait_for  # noqa: E402

SITE = '''
import cProfile, os
_OUT = os.environ["BENCH_PROFILE_DIR"]
def _start():
    profile = cProfile.Profile()
    real_exit = os._exit
    def _exit(status):
        profile.disable()
        profile.dump_stats(os.path.join(_OUT, "worker.%d" % os.getpid()))
        real_exit(status)
    os._exit = _exit
    profile.enable()
os.register_at_fork(after_in_child=_start)
'''


def run(serve: list[str], requests: int, close: bool, floor: bool, out: Path) -> list[Path]:
    port = free_port(socket.SOCK_STREAM)
    site = out / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITE)
    command = ([str(ROOT / "scripts" / "wsgi_floor.py"), *serve] if floor else
               ["-m", "prefork", "serve", *serve, "--log-level", "warning"])
    env = root_env({"BENCH_PROFILE_DIR": str(out)})
    env["PYTHONPATH"] = f"{site}{os.pathsep}{env.get('PYTHONPATH', '')}"
    proc = subprocess.Popen([sys.executable, *command, "-b", f"127.0.0.1:{port}"], cwd=ROOT,
                            env=env, stderr=subprocess.DEVNULL)
    try:
        def up() -> bool:
            try:
                drive(port, 1, True)
            except OSError:
                return False
            return True
        wait_for(up, 60, 0.1, "the server", error=RuntimeError)
        drive(port, 50, close)  # warm
        drive(port, requests, close)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return sorted(out.glob("worker.*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--close", action="store_true")
    parser.add_argument("--floor", action="store_true")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("serve", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    serve = [a for a in args.serve if a != "--"] or ["workers.wsgi_hello:app", "-w", "1"]
    with tempfile.TemporaryDirectory() as tmp:
        files = run(serve, args.requests, args.close, args.floor, Path(tmp))
        if not files:
            print("no worker stats written", file=sys.stderr)
            return 1
        stats = pstats.Stats(*(str(f) for f in files))
        n = args.requests + 51
        raw = stats.stats  # type: ignore[attr-defined]
        total_calls = sum(v[1] for v in raw.values())
        total_time = sum(v[2] for v in raw.values())
        print(f"{total_calls / n:.1f} calls/request, {total_time / n * 1e6:.1f} us/request "
              "(under cProfile)")
        rows = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:args.top]
        for (file, line, name), (_, calls, tot, cum, _) in rows:
            where = f"{Path(file).name}:{line}" if line else file
            print(f"{calls / n:7.2f}  {tot / n * 1e6:6.2f} us  {cum / n * 1e6:7.2f} cum  "
                  f"{name} ({where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
