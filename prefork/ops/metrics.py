"""Prometheus metrics and health probes, served by the master from its own knowledge: the
scoreboard (shared memory), psutil (``/proc``) and the kernel's view of the listening sockets
(prefork.ops.backlog).  A scrape never touches a worker, so a pool that is completely busy or
stuck still reports.

``/healthz`` is the liveness probe: it is answered by the master's loop itself, so any answer
means the loop is alive and turning (200, also while stopping: a draining master must not be
killed for it).  ``/readyz`` is the readiness probe: 200 while a generation serves (phase
serving or reloading, with at least one worker ready to take a connection), 503 while the pool
boots, is paused by WINCH, or stops -- so a load balancer sends traffic elsewhere.

The endpoint is an :class:`~prefork.ops.endpoint.Endpoint` in the master's select loop: its
connections are non-blocking, each gets :data:`SERVE_TIMEOUT` in total, and idle or slow
clients never hold up the master.  The answer (HTTP/1.0, text format 0.0.4) comes from
:class:`MetricsHandler`, an ordinary ``http.server.BaseHTTPRequestHandler``.
"""

from __future__ import annotations

import http.server
import logging
import socket
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from prefork.core.sockets import parse_bind
from prefork.ops.backlog import AcceptQueue, accept_queues
from prefork.ops.endpoint import SERVE_TIMEOUT, Endpoint
from prefork.ops.titles import counted

log = logging.getLogger("prefork.master")

MAX_HEAD = 8 * 1024  # bytes of request line and headers
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PLAIN = "text/plain; charset=utf-8"
STATES = ("booting", "idle", "busy", "draining", "stopped")  # stopped: SIGSTOP, status.py
READY_STATES = ("idle", "busy")  # a worker in these states takes connections
SERVING_PHASES = ("serving", "reloading")  # a generation serves (the old one, mid-reload)
METRICS_PATHS = ("/", "/metrics")
HEALTH_PATH, READY_PATH = "/healthz", "/readyz"


class Listeners(Protocol):
    """Where the listening sockets are (a PoolServer is one)."""

    def listening_servers(self) -> list[Any]: ...

    def listener_names(self) -> list[str]: ...

    def metrics_text(self) -> str: ...


def readiness(status: dict[str, Any]) -> tuple[bool, str]:
    """Whether the pool takes traffic, and a one-line reason, from a ``status()`` dict."""
    phase = status["master"].get("phase", "unknown")
    ready = sum(1 for w in status["workers"] if w["state"] in READY_STATES)
    if phase not in SERVING_PHASES:
        return False, f"not ready: {phase}"
    if not ready:
        return False, f"not ready: {phase}, no worker ready"
    return True, f"ready: {phase}, {counted(ready, 'worker')} ready"


def busy_ratio(workers: Sequence[dict[str, Any]]) -> float:
    """Busy workers over the workers that take connections (idle or busy); 0 with none.  A
    worker with handler threads counts as the share of its threads that are busy."""
    ready = [w for w in workers if w["state"] in READY_STATES]
    busy = sum(w["busy_threads"] / len(w["threads"]) if w.get("threads")
               else float(w["state"] == "busy") for w in ready)
    return busy / len(ready) if ready else 0.0


def escape_label(value: object) -> str:
    """A label value as the text format wants it: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: object) -> str:
    inner = ",".join(f'{key}="{escape_label(value)}"' for key, value in labels.items())
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def render(status: dict[str, Any], queues: Sequence[AcceptQueue] = ()) -> str:
    """The Prometheus text for a master's ``status()`` dict and its listeners' ``queues``."""
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
    metric("prefork_busy_ratio", "gauge",
           "Busy workers over the workers taking connections (idle or busy): scale on it.",
           [("", busy_ratio(workers))])
    metric("prefork_ready", "gauge", "1 while /readyz answers 200, else 0.",
           [("", int(readiness(status)[0]))])
    metric("prefork_listen_queue", "gauge",
           "Connections waiting in each listener's accept queue: scale on it.",
           [(_labels(listener=q.listener), q.waiting) for q in queues])
    metric("prefork_listen_queue_limit", "gauge",
           "The accept queue's limit (listen backlog, capped by net.core.somaxconn).",
           [(_labels(listener=q.listener), q.limit) for q in queues])
    metric("prefork_requests_total", "counter",
           "Requests served by all workers, past and present.",
           [("", master["requests_total"])])
    metric("prefork_restarts_total", "counter",
           "Workers replaced, by reason (reload: each old worker a finished reload retired).",
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
    metric("prefork_worker_busy_threads", "gauge",
           "Handler threads of each live worker serving a request (with threads > 1).",
           [(lab, w["busy_threads"]) for w, lab in per_worker if "busy_threads" in w])
    metric("prefork_worker_request_age_seconds", "gauge",
           "How long each busy worker's request (with threads: its oldest) has been in flight.",
           [(lab, w["request_age"]) for w, lab in per_worker if w["request_age"] is not None])
    return "\n".join(out) + "\n"


class MetricsHandler(http.server.BaseHTTPRequestHandler):
    """GET (or HEAD) / or /metrics: the Prometheus text of ``server.status()``; /healthz and
    /readyz: the probes (see the module's docstring); anything else: 404.

    ``server`` is the :class:`MetricsServer`.  Requests are logged at debug level only.
    """

    def do_GET(self) -> None:
        code, kind, body = self.answer()
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def answer(self) -> tuple[int, str, bytes]:
        server = self.server
        assert isinstance(server, MetricsServer)
        path = self.path.split("?", 1)[0]
        if path in METRICS_PATHS:
            text = render(server.status(), server.queues()) + server.extra()
            return 200, CONTENT_TYPE, text.encode()
        if path == HEALTH_PATH:
            return 200, PLAIN, b"ok\n"
        if path == READY_PATH:
            ready, why = readiness(server.status())
            return (200 if ready else 503), PLAIN, why.encode() + b"\n"
        return 404, PLAIN, b"not found\n"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics: %s %s", self.address_string(), format % args)


class MetricsServer(Endpoint):
    """The metrics endpoint (see :class:`Endpoint` for the methods the master calls).

    ``spec`` is a TCP ``HOST:PORT`` (port 0 picks one: see :attr:`address`); ``status()``
    returns the master's status dict, which :func:`render` turns into the text format;
    ``listeners`` (the server) has the sockets whose accept queues are reported.  It runs in the
    master's loop: it must not block.
    """

    handler_class = MetricsHandler
    name = "metrics"
    timeout = SERVE_TIMEOUT
    max_request = MAX_HEAD

    def __init__(
        self, spec: str, status: Callable[[], dict[str, Any]], listeners: Listeners | None = None,
    ) -> None:
        bind = parse_bind(spec)
        if bind.kind != "tcp":
            raise ValueError(f"metrics: {spec!r} must be a TCP HOST:PORT")
        self.status = status
        self.listeners = listeners
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

    def queues(self) -> list[AcceptQueue]:
        if self.listeners is None:
            return []
        return accept_queues(self.listeners.listening_servers(), self.listeners.listener_names())

    def extra(self) -> str:
        """The server's own families (``PoolServer.metrics_text``), or nothing."""
        return self.listeners.metrics_text() if self.listeners is not None else ""

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
