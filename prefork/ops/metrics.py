"""Prometheus metrics, served by the master from its own knowledge: the scoreboard (shared
memory) and psutil (``/proc``).  A scrape never touches a worker, so a pool that is completely
busy or stuck still reports.

The endpoint is a listening TCP socket in the master's select loop: one scrape is accepted,
answered (HTTP/1.0, text format 0.0.4) and closed within :data:`SERVE_TIMEOUT`; the master does
nothing else meanwhile, which is fine for a scrape every few seconds.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import time
from collections.abc import Callable
from typing import Any

from prefork.core.sockets import parse_bind

log = logging.getLogger("prefork.master")

SERVE_TIMEOUT = 1.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATES = ("booting", "idle", "busy", "draining")


def _labels(**labels: object) -> str:
    inner = ",".join(
        f'{key}="{str(value).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for key, value in labels.items()
    )
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def render(status: dict[str, Any]) -> str:
    """The Prometheus text for a master's ``status()`` dict."""
    master, workers = status["master"], status["workers"]
    out: list[str] = []

    def metric(name: str, kind: str, helptext: str, samples: list[tuple[str, float]]) -> None:
        out.append(f"# HELP {name} {helptext}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)

    metric("prefork_pool_size", "gauge", "Workers the pool is meant to have.",
           [("", master["size"])])
    metric("prefork_generation", "gauge", "Current generation (reloads so far + 1).",
           [("", master["generation"])])
    counts = {state: 0 for state in STATES}
    for w in workers:
        counts[w["state"]] = counts.get(w["state"], 0) + 1
    metric("prefork_workers", "gauge", "Workers by state.",
           [(_labels(state=state), n) for state, n in counts.items()])
    metric("prefork_requests_total", "counter",
           "Requests served by all workers, past and present.",
           [("", master["requests_total"])])
    metric("prefork_restarts_total", "counter", "Workers replaced, by reason.",
           [(_labels(reason=r), n) for r, n in sorted(master["restarts"].items())])
    per_worker = [(w, _labels(worker=w["worker"], pid=w["pid"])) for w in workers]
    metric("prefork_worker_requests", "gauge", "Requests served by each live worker.",
           [(lab, w["requests"]) for w, lab in per_worker])
    metric("prefork_worker_empty_accepts", "gauge",
           "Wake-ups of each live worker that found no connection (thundering herd).",
           [(lab, w["empty_accepts"]) for w, lab in per_worker])
    metric("prefork_worker_rss_bytes", "gauge", "Resident memory of each live worker.",
           [(lab, w["rss_mb"] * 1024 * 1024) for w, lab in per_worker if w["rss_mb"] is not None])
    metric("prefork_worker_cpu_seconds_total", "counter", "CPU time of each live worker.",
           [(lab, w["cpu_seconds"]) for w, lab in per_worker if w["cpu_seconds"] is not None])
    metric("prefork_worker_request_age_seconds", "gauge",
           "How long each busy worker's request has been in flight.",
           [(lab, w["request_age"]) for w, lab in per_worker if w["request_age"] is not None])
    return "\n".join(out) + "\n"


class MetricsServer:
    """Methods for the master's loop: fileno(), on_readable(), close()."""

    def __init__(self, spec: str, status: Callable[[], dict[str, Any]]) -> None:
        bind = parse_bind(spec)
        if bind.kind != "tcp":
            raise ValueError(f"metrics: {spec!r} must be a TCP HOST:PORT")
        self.status = status
        self.sock = socket.socket(bind.family, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # During a USR2 upgrade the old and the new master both listen for a moment.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            self.sock.bind(bind.address)
            self.sock.listen(16)
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()

    def fileno(self) -> int:
        return self.sock.fileno()

    def register(self, selector: selectors.BaseSelector) -> None:  # interim, until endpoint.py
        selector.register(self.sock.fileno(), selectors.EVENT_READ, lambda mask: self.on_readable())

    def deadline(self) -> float | None:
        return None

    def expire(self, now: float) -> None:
        pass

    def on_readable(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        deadline = time.monotonic() + SERVE_TIMEOUT
        try:
            with conn:
                conn.settimeout(SERVE_TIMEOUT)
                head = b""
                while b"\r\n\r\n" not in head and b"\n\n" not in head and len(head) < 8192:
                    if time.monotonic() > deadline:
                        return
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
                if path.split(b"?")[0] not in (b"/", b"/metrics"):
                    conn.sendall(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    return
                body = render(self.status()).encode()
                conn.sendall(
                    f"HTTP/1.0 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode() + body
                )
        except OSError as exc:
            log.debug("master (pid %d) metrics scrape failed: %s", os.getpid(), exc)

    def close(self) -> None:
        self.sock.close()
