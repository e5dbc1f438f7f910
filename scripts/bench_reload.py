"""How long a code change takes to be served: a Flask app (2 workers) is rewritten, then HUP
(or, with --reload, nothing: the watcher sees the file), and the time until a client gets the
new answer is measured, client side, several rounds, with and without --preload.

    python scripts/bench_reload.py [--rounds 5]

Needs flask (the test extra) and watchfiles (--reload).
"""

from __future__ import annotations

import argparse
import http.client
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procs import Proc, free_port, root_env, wait_for

APP = '''
import flask
app = flask.Flask(__name__)
VERSION = {version!r}

@app.get("/")
def index():
    return VERSION
'''
CASES = [("HUP", (), False), ("HUP --preload", ("--preload",), False),
         ("--reload", ("--reload",), True), ("--reload --preload", ("--reload", "--preload"), True)]


def answer(port: int) -> str:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/")
        return conn.getresponse().read().decode()
    except OSError:
        return ""


def measure(where: Path, extra: tuple[str, ...], watched: bool, rounds: int) -> list[float]:
    source = where / "flaskapp.py"
    source.write_text(APP.format(version="v0"))
    port = free_port()
    argv = [sys.executable, "-m", "prefork", "serve", "flaskapp:app", "-b", f"127.0.0.1:{port}",
            "-w", "2", "--log-level", "warning", *extra]
    env = {**root_env(), "PYTHONDONTWRITEBYTECODE": "1"}
    times = []
    with Proc(argv, env=env, cwd=where, name="prefork") as proc:
        proc.wait_ready(lambda: answer(port) == "v0", 60)
        for round_ in range(1, rounds + 1):
            version = f"v{round_}"
            started = time.monotonic()
            source.write_text(APP.format(version=version))
            if not watched:
                proc.signal(signal.SIGHUP)
            wait_for(lambda: answer(port) == version, 30, 0.005, version)  # noqa: B023
            times.append(time.monotonic() - started)
            time.sleep(0.5)  # let the old generation retire before the next change
        proc.stop()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print("| change served by | median | range |\n|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra, watched in CASES:
            times = measure(Path(tmp), extra, watched, args.rounds)
            print(f"| {label} | {statistics.median(times) * 1000:.0f} ms | "
                  f"{min(times) * 1000:.0f}-{max(times) * 1000:.0f} ms |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
