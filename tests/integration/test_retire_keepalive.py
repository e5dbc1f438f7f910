"""No request is lost when a worker retires (HUP, recycling by ``--max-requests``) while
keep-alive clients go on sending: the retiring worker keeps each kept-alive connection until it
sends its next request (answered with ``Connection: close``) or has been idle for a short grace,
instead of closing it while the client's next request may already be on the wire.  Before this,
8 http.client clients saw RemoteDisconnected across a few HUPs."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from helpers import LOCAL, server_process, wait_for

CLIENTS = 6


@contextmanager
def keep_alive_clients(address: tuple[str, int]) -> Iterator[tuple[list[int], list[str]]]:
    """CLIENTS threads, each one http.client connection issuing GETs non-stop (it reconnects
    by itself after ``Connection: close``, and only then); yields ([requests answered],
    [failures])."""
    stop = threading.Event()
    done = [0]
    failures: list[str] = []
    lock = threading.Lock()

    def run() -> None:
        conn = http.client.HTTPConnection(*address, timeout=10)
        try:
            while not stop.is_set():
                try:
                    conn.request("GET", "/")
                    response = conn.getresponse()
                    body = response.read()
                    ok = response.status == 200 and body
                except (OSError, http.client.HTTPException) as exc:
                    ok = False
                    body = repr(exc).encode()
                    conn.close()
                with lock:
                    if ok:
                        done[0] += 1
                    else:
                        failures.append(body.decode(errors="replace"))
        finally:
            conn.close()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        yield done, failures
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)


@pytest.mark.parametrize("app", ["workers.wsgi_hello:app", "workers.http_hello:Hello"])
def test_no_request_lost_across_reloads(app: str) -> None:
    with server_process("serve", app, "-b", LOCAL, "-w", "2", "--graceful-timeout", "5") as server:
        address = server.tcp_address()
        server.ready_workers(2)
        with keep_alive_clients(address) as (done, failures):
            for generation in range(2, 5):
                before = done[0]
                wait_for(lambda b=before: done[0] > b + 200, what="requests flowing")
                server.reload(generation)
            before = done[0]
            wait_for(lambda: done[0] > before + 200, what="requests flowing after the reloads")
        assert not failures, f"{len(failures)} failed of {done[0] + len(failures)}: {failures[:3]}"


def test_no_request_lost_when_workers_recycle() -> None:
    with server_process("serve", "workers.wsgi_hello:app", "-b", LOCAL, "-w", "2",
                        "--max-requests", "50", "--max-requests-jitter", "0") as server:
        address = server.tcp_address()
        server.ready_workers(2)
        start = server.mark()
        with keep_alive_clients(address) as (done, failures):
            # Each worker retires after ~50 requests: many retirements under way.
            wait_for(lambda: len(server.ready_pids(start)) >= 6 and done[0] > 400, timeout=30,
                     what="several workers recycled")
        assert not failures, f"{len(failures)} failed of {done[0] + len(failures)}: {failures[:3]}"
