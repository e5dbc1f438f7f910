"""Prometheus metrics, served by the master from its own knowledge: the scoreboard (shared
memory) and psutil (``/proc``).  A scrape never touches a worker, so a pool that is completely
busy or stuck still reports.

The endpoint is an :class:`~prefork.ops.endpoint.Endpoint` in the master's select loop: its
connections are non-blocking, each gets :data:`SERVE_TIMEOUT` in total, and idle or slow
clients never hold up the master.  The answer (HTTP/1.0, text format 0.0.4) comes from
:class:`MetricsHandler`, an ordinary ``http.server.BaseHTTPRequestHandler``.
"""

from __future__ import annotations

import http.server
import logging
import socket
from collections.abc import Callable
from typing import Any

from prefork.core.sockets import parse_bind
from prefork.ops.endpoint import Endpoint

log = logging.getLogger("prefork.master")

SERVE_TIMEOUT = 1.0
MAX_HEAD = 8 * 1024  # bytes of request line and headers
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATES = ("booting", "idle", "busy", "draining")


def escape_label(value: object) -> str:
    """A label value as the text format wants it: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: object) -> str:
    inner = ",".join(f'{key}="{escape_label(value)}"' for key, value in labels.items())
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


class MetricsHandler(http.server.BaseHTTPRequestHandler):
    """GET / or /metrics: the Prometheus text of ``server.status()``; anything else: 404.

    ``server`` is the :class:`MetricsServer`.  Requests are logged at debug level only.
    """

    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, MetricsServer)
        if self.path.split("?", 1)[0] not in ("/", "/metrics"):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = render(server.status()).encode()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics: %s %s", self.address_string(), format % args)


class MetricsServer(Endpoint):
    """The metrics endpoint (see :class:`Endpoint` for the methods the master calls).

    ``spec`` is a TCP ``HOST:PORT`` (port 0 picks one: see :attr:`address`); ``status()``
    returns the master's status dict, which :func:`render` turns into the text format.  It runs
    in the master's loop: it must not block.
    """

    handler_class = MetricsHandler
    name = "metrics"
    timeout = SERVE_TIMEOUT
    max_request = MAX_HEAD

    def __init__(self, spec: str, status: Callable[[], dict[str, Any]]) -> None:
        bind = parse_bind(spec)
        if bind.kind != "tcp":
            raise ValueError(f"metrics: {spec!r} must be a TCP HOST:PORT")
        self.status = status
        sock = socket.socket(bind.family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # During a USR2 upgrade the old and the new master both listen for a moment.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(bind.address)
            sock.listen(self.backlog)
        except OSError:
            sock.close()
            raise
        super().__init__(sock)
        self.address = sock.getsockname()

    def request_complete(self, data: bytearray) -> bool:
        return b"\r\n\r\n" in data or b"\n\n" in data

    def timeout_reply(self) -> bytes:
        return _plain(408, "Request Timeout")

    def too_large_reply(self) -> bytes:
        return _plain(431, "Request Header Fields Too Large")

    def failure_reply(self, exc: Exception) -> bytes:
        return _plain(500, "Internal Server Error")


def _plain(code: int, reason: str) -> bytes:
    return f"HTTP/1.0 {code} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
