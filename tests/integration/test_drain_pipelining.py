"""A graceful stop answers the pipelined requests a held connection has received (see
test_mux_drain.py), but must not be held open by a client that goes on pipelining: the drain
serves what was there when it looked, then closes the connection, so a retired worker (HUP,
recycling) leaves and a TERM ends without a kill.  (Found by review: the first version of the
drain served a connection for as long as requests kept arriving.)"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from helpers import LOCAL, pid_alive, server_process, wait_for

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


@contextmanager
def pipelining_client(address: tuple[str, int]) -> Iterator[list[int]]:
    """One keep-alive connection that writes pipelined requests and reads answers non-stop;
    yields [bytes of answers read so far]."""
    sock = socket.create_connection(address, timeout=5)
    stop = threading.Event()
    received = [0]

    def write() -> None:
        try:
            while not stop.is_set():
                sock.sendall(REQUEST * 500)
        except OSError:
            pass

    def read() -> None:
        try:
            while not stop.is_set() and (chunk := sock.recv(65536)):
                received[0] += len(chunk)
        except OSError:
            pass

    threads = [threading.Thread(target=f, daemon=True) for f in (write, read)]
    for thread in threads:
        thread.start()
    try:
        yield received
    finally:
        stop.set()
        sock.close()
        for thread in threads:
            thread.join(5)


def test_a_reload_retires_the_old_worker_despite_a_pipelining_client() -> None:
    with server_process("serve", "workers.http_hello:Hello", "-b", LOCAL, "-w", "1",
                        "--graceful-timeout", "3") as server:
        address = server.tcp_address()
        (old,) = server.ready_workers(1)
        with pipelining_client(address) as received:
            wait_for(lambda: received[0] > 100_000, what="pipelined answers flowing")
            server.reload(2)
            # The requests already received are answered, then the connection closes: the old
            # worker leaves well within graceful_timeout (it left in ~0.05 s before e406cfe).
            wait_for(lambda: not pid_alive(old), timeout=8,
                     what="the retired worker gone while a client keeps pipelining")


def test_a_graceful_stop_ends_without_a_kill_despite_a_pipelining_client() -> None:
    with server_process("serve", "workers.http_hello:Hello", "-b", LOCAL, "-w", "1",
                        "--graceful-timeout", "3") as server:
        address = server.tcp_address()
        server.ready_workers(1)
        with pipelining_client(address) as received:
            wait_for(lambda: received[0] > 100_000, what="pipelined answers flowing")
            server.signal(signal.SIGTERM)
            server.wait()
        assert "killing 1 worker still running" not in server.text(), server.text()
