"""The adaptive pool: --min-spare/--max-spare grow and shrink it within [workers, max_children]."""

from __future__ import annotations

import signal
import socket

from helpers import server_process, wait_for


def test_pool_grows_when_busy_and_shrinks_when_idle() -> None:
    args = ("serve", "tests.apps.slow:Hold", "-b", "127.0.0.1:0", "-w", "1", "--max-children",
            "4", "--min-spare", "1", "--max-spare", "1")
    with server_process(*args) as server:
        address = server.tcp_address()
        server.wait_workers(1)
        # Held connections leave fewer idle workers than min_spare: the pool grows.
        clients = []
        try:
            for _ in range(3):
                client = socket.create_connection(address, timeout=30)
                clients.append(client)
            server.wait_line(r"idle < min_spare 1: growing to 2", timeout=15)
            server.wait_line(r"idle < min_spare 1: growing to 3", timeout=15)
            wait_for(lambda: len(server.workers()) >= 3, what="three workers")
        finally:
            for client in clients:
                client.close()  # the handlers finish: idle workers pile up
        server.wait_line(r"idle > max_spare 1: shrinking to 2", timeout=30)
        server.wait_line(r"idle > max_spare 1: shrinking to 1", timeout=30)
        wait_for(lambda: len(server.workers()) == 1, what="the pool back at --workers")
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=40) == 0
