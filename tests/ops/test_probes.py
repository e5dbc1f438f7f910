"""prefork.ops.metrics: /healthz, /readyz and the scaling metrics, on a MetricsServer driven by a
select loop with a status the test sets."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_control import Loop

from helpers import http_get
from prefork.ops.metrics import MetricsServer, busy_ratio, readiness, render


def status(phase: str, *states: str) -> dict[str, Any]:
    return {
        "master": {"size": len(states), "generation": 1, "requests_total": 0, "restarts": {},
                   "phase": phase},
        "workers": [
            {"worker": n, "pid": 100 + n, "state": state, "requests": 0, "empty_accepts": 0,
             "rss_mb": None, "cpu_seconds": None, "request_age": None}
            for n, state in enumerate(states, 1)
        ],
    }


@pytest.mark.parametrize(
    ("phase", "states", "ready"),
    [
        ("serving", ("idle", "busy"), True),
        ("reloading", ("idle", "booting"), True),  # the old generation still serves
        ("booting", ("idle", "booting"), False),
        ("paused", ("draining",), False),
        ("paused", (), False),
        ("stopping", ("busy",), False),
        ("serving", ("booting",), False),  # the only worker is being replaced
        ("reloading", ("booting", "draining"), False),
    ],
)
def test_readiness(phase: str, states: tuple[str, ...], ready: bool) -> None:
    answer, why = readiness(status(phase, *states))
    assert answer is ready
    assert phase in why


def test_busy_ratio_counts_only_workers_taking_connections() -> None:
    assert busy_ratio(status("serving", "busy", "idle", "idle", "idle")["workers"]) == 0.25
    assert busy_ratio(status("serving", "busy", "draining", "booting")["workers"]) == 1.0
    assert busy_ratio([]) == 0.0


def test_busy_ratio_counts_the_busy_share_of_handler_threads() -> None:
    threaded = {"state": "busy", "busy_threads": 1, "threads": [{}] * 4}
    idle = {"state": "idle", "busy_threads": 0, "threads": [{}] * 4}
    assert busy_ratio([threaded, idle]) == 0.125


class Listener:
    def __init__(self, sock: socket.socket, name: str) -> None:
        self.socket, self.name = sock, name

    def listening_servers(self) -> list[Any]:
        return [self]

    def listener_names(self) -> list[str]:
        return [self.name]

    def metrics_text(self) -> str:
        return ""


@pytest.fixture
def probed() -> Iterator[tuple[tuple[str, int], dict[str, Any], socket.socket]]:
    current = {"status": status("serving", "idle", "busy")}
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(16)
    server = MetricsServer("127.0.0.1:0", lambda: current["status"],
                           Listener(listening, "127.0.0.1:1"))
    loop = Loop(server)
    try:
        yield server.address[:2], current, listening
    finally:
        loop.stop()
        listening.close()


def test_probes_follow_the_phase(
    probed: tuple[tuple[str, int], dict[str, Any], socket.socket],
) -> None:
    address, current, _ = probed
    assert http_get(*address, path="/healthz") == (200, b"ok\n")
    assert http_get(*address, path="/readyz") == (200, b"ready: serving, 2 workers ready\n")
    current["status"] = status("paused")
    code, body = http_get(*address, path="/readyz")
    assert (code, body) == (503, b"not ready: paused\n")
    assert http_get(*address, path="/healthz")[0] == 200  # alive, only not ready
    current["status"] = status("stopping", "busy")
    assert http_get(*address, path="/readyz?verbose")[0] == 503


def test_head_has_no_body(
    probed: tuple[tuple[str, int], dict[str, Any], socket.socket],
) -> None:
    address, _, _ = probed
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"HEAD /readyz HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") and body == b""


def test_scaling_metrics(probed: tuple[tuple[str, int], dict[str, Any], socket.socket]) -> None:
    address, _, listening = probed
    clients = [socket.create_connection(listening.getsockname()) for _ in range(5)]
    try:
        code, body = http_get(*address, path="/metrics")
    finally:
        for client in clients:
            client.close()
    assert code == 200
    samples = {
        (s.name, tuple(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode()) for s in family.samples
    }
    assert samples[("prefork_listen_queue", (("listener", "127.0.0.1:1"),))] == 5
    assert samples[("prefork_listen_queue_limit", (("listener", "127.0.0.1:1"),))] == 16
    assert samples[("prefork_busy_ratio", ())] == 0.5
    assert samples[("prefork_ready", ())] == 1
    assert "prefork_listen_queue{" not in render(status("serving", "idle"))  # no listeners
