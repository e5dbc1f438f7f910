"""Keep-alive clients for the nothing-lost tests: http.client and httpx threads and, where it is
installed, wrk, all sending GETs non-stop on kept-alive connections to one server while a test
retires its workers.  Every request that does not get a 200 (an exception, a reset, a wrong
status) is a failure, with what happened."""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx

WRK = shutil.which("wrk")
TIMEOUT = 15.0  # seconds a client waits for one answer (a paused pool answers later)


@dataclass
class Load:
    """What the clients saw so far: ``done`` answered requests (all clients but wrk, which
    reports at its end), ``failures`` what went wrong; ``wrk`` its summary once it ended."""

    done: int = 0
    failures: list[str] = field(default_factory=list)
    wrk: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, ok: bool, what: str) -> None:
        with self.lock:
            if ok:
                self.done += 1
            else:
                self.failures.append(what)

    def report(self) -> str:
        return (f"{len(self.failures)} failed of {self.done + len(self.failures)} "
                f"(wrk: {self.wrk}): {self.failures[:3]}")


def _http_client(address: tuple[str, int], stop: threading.Event, load: Load) -> None:
    conn = http.client.HTTPConnection(*address, timeout=TIMEOUT)
    try:
        while not stop.is_set():
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                body = response.read()
                load.count(response.status == 200 and bool(body), f"http.client {response.status}")
                if response.will_close:
                    conn.close()  # it reconnects by itself on the next request
            except (OSError, http.client.HTTPException) as exc:
                load.count(False, f"http.client {exc!r}")
                conn.close()
    finally:
        conn.close()


def _httpx_client(address: tuple[str, int], stop: threading.Event, load: Load) -> None:
    url = f"http://{address[0]}:{address[1]}/"
    with httpx.Client(timeout=TIMEOUT, limits=httpx.Limits(max_keepalive_connections=1)) as client:
        while not stop.is_set():
            try:
                response = client.get(url)
                load.count(response.status_code == 200, f"httpx {response.status_code}")
            except httpx.HTTPError as exc:
                load.count(False, f"httpx {exc!r}")


def _wrk(address: tuple[str, int], seconds: int, load: Load) -> None:
    assert WRK is not None
    done = subprocess.run(
        [WRK, "-t1", "-c4", f"-d{seconds}s", "--timeout", f"{int(TIMEOUT)}s",
         f"http://{address[0]}:{address[1]}/"], capture_output=True, text=True,
        timeout=seconds + TIMEOUT + 10)
    out = done.stdout
    summary = {"requests": int(m.group(1)) if (m := re.search(r"(\d+) requests in", out)) else -1}
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                      out):
        summary.update(zip(("connect", "read", "write", "timeout"),
                           (int(g) for g in m.groups()), strict=True))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    summary["non2xx"] = int(m.group(1)) if m else 0
    load.wrk = summary
    errors = sum(v for k, v in summary.items() if k != "requests")
    if done.returncode != 0 or summary["requests"] <= 0 or errors:
        load.count(False, f"wrk {summary} rc={done.returncode} {done.stderr[-200:]}")


@contextmanager
def keep_alive_load(address: tuple[str, int], wrk_seconds: int = 0,
                    http_clients: int = 4, httpx_clients: int = 2) -> Iterator[Load]:
    """Clients on ``address`` for the block's duration (wrk, if installed and
    ``wrk_seconds``, for that long: the block should last at least as long)."""
    load, stop = Load(), threading.Event()
    runs: list[Callable[[], None]] = [
        *(lambda: _http_client(address, stop, load) for _ in range(http_clients)),
        *(lambda: _httpx_client(address, stop, load) for _ in range(httpx_clients)),
    ]
    if WRK is not None and wrk_seconds:
        runs.append(lambda: _wrk(address, wrk_seconds, load))
    threads = [threading.Thread(target=run, daemon=True) for run in runs]
    for thread in threads:
        thread.start()
    try:
        yield load
    finally:
        stop.set()
        for thread in threads:
            thread.join(TIMEOUT + wrk_seconds + 15)
