"""Handlers and hooks for the live-operation tests in tests/integration/ (reload, scaling, logs,
config layers, hooks, systemd, pid file).

Hooks append one line each to the file named by ``$LIVEOPS_HOOK_LOG`` (opened in append mode
for every line, so lines from the master and from workers never interleave), and the failing
hooks fail only while the file named by ``$LIVEOPS_FAIL_MARKER`` exists, so a test can make a
*reload* fail without touching the first boot.
"""

from __future__ import annotations

import logging
import os
from http.server import BaseHTTPRequestHandler
from typing import Any

log = logging.getLogger("liveops")


class _Plain(BaseHTTPRequestHandler):
    def reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class PidHello(_Plain):
    """Answers every GET with the pid of the worker that served it."""

    def do_GET(self) -> None:
        self.reply(b"%d\n" % os.getpid())


class LoggingHello(PidHello):
    """PidHello that also logs one line per request through ``logging`` (in the worker)."""

    def do_GET(self) -> None:
        log.info("request %s served by worker pid %d", self.path, os.getpid())
        super().do_GET()


# -- hooks --------------------------------------------------------------------------------------


def _record(*words: object) -> None:
    path = os.environ.get("LIVEOPS_HOOK_LOG")
    if path:
        with open(path, "a") as f:
            f.write(" ".join(str(w) for w in words) + "\n")


def _age(worker: Any) -> int:
    return int(worker.age)


def on_starting(server: Any) -> None:
    _record("on_starting", os.getpid())


def pre_fork(server: Any, worker: Any) -> None:
    _record("pre_fork", _age(worker), os.getpid())


def post_fork(server: Any, worker: Any) -> None:
    _record("post_fork", _age(worker), os.getpid())


def post_worker_init(server: Any, worker: Any) -> None:
    _record("post_worker_init", _age(worker), os.getpid())


def worker_exit(server: Any, worker: Any, status: int) -> None:
    _record("worker_exit", _age(worker), worker.pid, status)


def on_reload(server: Any) -> None:
    _record("on_reload", os.getpid())


def on_exit(server: Any) -> None:
    _record("on_exit", os.getpid())


def post_fork_fails_on_marker(server: Any, worker: Any) -> None:
    """Fails while ``$LIVEOPS_FAIL_MARKER`` exists: the first generation boots, a reload not."""
    marker = os.environ.get("LIVEOPS_FAIL_MARKER")
    if marker and os.path.exists(marker):
        raise RuntimeError(f"post_fork refuses worker {_age(worker)} (marker {marker})")


def post_fork_always_fails(server: Any, worker: Any) -> None:
    raise RuntimeError(f"post_fork refuses worker {_age(worker)} (pid {os.getpid()})")
