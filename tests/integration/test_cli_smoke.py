from __future__ import annotations

import signal

from helpers import http_get, server_process


def test_demo_serves_and_stops_on_term() -> None:
    with server_process("serve", "-b", "127.0.0.1:0", "-w", "2") as server:
        host, port = server.tcp_address()
        server.wait_workers(2)
        status, body = http_get(host, port)
        assert status == 200
        assert b"Hello from prefork" in body
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
