"""Prometheus metrics served by the master, parsed by the reference parser."""

from __future__ import annotations

import signal
import socket
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from helpers import http_get, server_process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_metrics_parse_and_match_the_pool() -> None:
    port = free_port()
    args = ("serve", "workers.http_hello:Hello", "-b", "127.0.0.1:0", "-w", "2",
            "--metrics", f"127.0.0.1:{port}")
    with server_process(*args) as server:
        address = server.tcp_address()
        workers = server.wait_workers(2)
        for _ in range(7):
            assert http_get(*address)[0] == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = response.read().decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in families.values() for s in family.samples
        }
        assert samples[("prefork_pool_size", ())] == 2
        assert samples[("prefork_workers", (("state", "idle"),))] == 2
        assert samples[("prefork_requests_total", ())] == 7
        pids = {s.labels["pid"] for s in families["prefork_worker_rss_bytes"].samples}
        assert pids == {str(w.pid) for w in workers}
        assert all(s.value > 1e6 for s in families["prefork_worker_rss_bytes"].samples)
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
