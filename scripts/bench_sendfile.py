"""Server CPU for a large file download: Flask's ``send_file`` (``wsgi.file_wrapper``) served by
prefork and by gunicorn's sync and gthread workers, one worker each, side by side.

Each round starts every contender in turn (the order alternating), downloads the file once to
warm up, then ``--downloads`` times over fresh connections, and reads the user + system CPU of
the whole server process tree (master and worker) before and after; the figure is CPU
milliseconds per download.  gunicorn is skipped when it is not installed.

    python scripts/bench_sendfile.py [--size-mb 20] [--downloads 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
from procs import ROOT, free_port, wait_for

APP = "tests.apps.flask_app:app"


def contenders(port: int) -> dict[str, list[str]]:
    found = {"prefork": [sys.executable, "-m", "prefork", "serve", APP, "-b",
                         f"127.0.0.1:{port}", "-w", "1"]}
    gunicorn = shutil.which("gunicorn") or str(Path(sys.executable).with_name("gunicorn"))
    if Path(gunicorn).exists():
        found["gunicorn sync"] = [gunicorn, "-w", "1", "-b", f"127.0.0.1:{port}", APP]
        found["gunicorn gthread"] = [gunicorn, "-w", "1", "--threads", "4", "-b",
                                     f"127.0.0.1:{port}", APP]
    return found


def tree_cpu(pid: int) -> float:
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def download(port: int, target: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        size = 0
        while block := response.read(1 << 20):
            size += len(block)
        return size
    finally:
        conn.close()


def measure(argv: list[str], port: int, target: str, downloads: int, size: int) -> float:
    """CPU milliseconds of the server tree per download."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    server = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: _answers(port, target, size), 30, 0.1, "the server answering")
        before = tree_cpu(server.pid)
        for _ in range(downloads):
            assert download(port, target) == size
        return 1000 * (tree_cpu(server.pid) - before) / downloads
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def _answers(port: int, target: str, size: int) -> bool:
    try:
        return download(port, target) == size
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=20)
    parser.add_argument("--downloads", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mb * 1000 * 1000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "file.bin"
        path.write_bytes(os.urandom(size))
        target = f"/download?{path}"
        results: dict[str, list[float]] = {}
        for round_ in range(args.rounds):
            names = list(contenders(0))
            if round_ % 2:
                names.reverse()
            for name in names:
                port = free_port()  # a port of its own for each start
                cpu = measure(contenders(port)[name], port, target, args.downloads, size)
                results.setdefault(name, []).append(cpu)
                print(f"round {round_ + 1} {name:17s} {cpu:6.2f} ms CPU per download", flush=True)
    base = sorted(results["prefork"])[len(results["prefork"]) // 2]
    for name, values in results.items():
        median = sorted(values)[len(values) // 2]
        print(f"{name:17s} median {median:6.2f} ms CPU per {args.size_mb} MB download "
              f"({median / base:.2f}x prefork)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
