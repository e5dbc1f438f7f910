"""prefork.ops.metrics: the text format, and a real MetricsServer driven by a select loop."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_control import TIMEOUT, Loop

from prefork.ops.metrics import CONTENT_TYPE, MetricsServer, escape_label, render

NASTY = 'back\\slash "quoted"\nnew line'


def status() -> dict[str, Any]:
    return {
        "master": {"size": 2, "generation": 1, "requests_total": 7,
                   "restarts": {"crash": 1, NASTY: 2}},
        "workers": [
            {"worker": 1, "pid": 101, "state": "idle", "requests": 3, "empty_accepts": 0,
             "rss_mb": 20.5, "cpu_seconds": 0.25, "request_age": None},
            {"worker": 2, "pid": 102, "state": "busy", "requests": 4, "empty_accepts": 1,
             "rss_mb": None, "cpu_seconds": None, "request_age": 1.5},
        ],
    }


def test_escape_label() -> None:
    assert escape_label(NASTY) == 'back\\\\slash \\"quoted\\"\\nnew line'
    for line in render(status()).splitlines():  # no raw newline splits a sample
        assert line.startswith(("# ", "prefork_")), line


def test_render_parses_and_round_trips_label_values() -> None:
    text = render(status())
    families = {f.name: f for f in text_string_to_metric_families(text)}
    restarts = {s.labels["reason"]: s.value for s in families["prefork_restarts"].samples}
    assert restarts == {"crash": 1, NASTY: 2}
    workers = {s.labels["state"]: s.value for s in families["prefork_workers"].samples}
    assert workers == {"booting": 0, "idle": 1, "busy": 1, "draining": 0, "stopped": 0}
    ages = families["prefork_worker_request_age_seconds"].samples
    assert [(s.labels["pid"], s.value) for s in ages] == [("102", 1.5)]


@pytest.fixture
def scraped() -> Iterator[tuple[str, int, MetricsServer]]:
    server = MetricsServer("127.0.0.1:0", status)
    loop = Loop(server)
    try:
        host, port = server.address[:2]
        yield host, port, server
    finally:
        loop.stop()


def raw(host: str, port: int, payload: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        sock.sendall(payload)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_scrape(scraped: tuple[str, int, MetricsServer]) -> None:
    host, port, _ = scraped
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=TIMEOUT) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == CONTENT_TYPE
        assert response.read().decode() == render(status())
    with urllib.request.urlopen(f"http://{host}:{port}/?x=1", timeout=TIMEOUT) as response:
        assert response.status == 200
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://{host}:{port}/other", timeout=TIMEOUT)
    assert info.value.code == 404


@pytest.mark.parametrize(
    ("payload", "status_line"),
    [
        (b"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n", b"HTTP/1.0 501"),
        (b"GET /a b HTTP/1.0\r\n\r\n", b"HTTP/1.0 400"),
        (b"GET /metrics HTTP/1.0\r\nX: " + b"a" * 9000 + b"\r\n\r\n", b"HTTP/1.0 431"),
        (b"GET /metrics HTTP/1.0\n\n", b"HTTP/1.0 200"),
    ],
)
def test_odd_requests(
    scraped: tuple[str, int, MetricsServer], payload: bytes, status_line: bytes
) -> None:
    host, port, _ = scraped
    assert raw(host, port, payload).startswith(status_line)


def test_idle_clients_do_not_delay_a_scrape(scraped: tuple[str, int, MetricsServer]) -> None:
    host, port, server = scraped
    idle = [socket.create_connection((host, port), timeout=TIMEOUT) for _ in range(20)]
    try:
        idle[0].sendall(b"GET /met")  # a slow one
        start = time.monotonic()
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=TIMEOUT) as resp:
            assert resp.status == 200
        assert time.monotonic() - start < 0.3
        for sock in idle:  # answered at their deadline, all at about the same time
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            assert data.startswith(b"HTTP/1.0 408")
        assert time.monotonic() - start < server.timeout + 0.5
    finally:
        for sock in idle:
            sock.close()
