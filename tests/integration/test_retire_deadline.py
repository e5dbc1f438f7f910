"""A retired worker (HUP) whose request goes on longer than graceful_timeout is killed then, as
a graceful stop's would be: a reload must end even if one request does not (a stream, a client
that keeps a long request open), and the pool must not keep an old worker beside the new ones."""

from __future__ import annotations

import socket

from helpers import LOCAL, pid_alive, server_process, wait_for


def test_a_retired_worker_still_busy_after_graceful_timeout_is_killed() -> None:
    with server_process("serve", "tests.apps.slow:Slow", "-b", LOCAL, "-w", "1",
                        "--graceful-timeout", "1", "--timeout", "0") as server:
        (old,) = server.ready_workers(1)
        with socket.create_connection(server.tcp_address(), timeout=10) as client:
            client.sendall(b"60\n")
            assert client.recv(100) == b"started\n"
            server.reload(2)
            wait_for(lambda: not pid_alive(old), timeout=6,
                     what="the retired worker killed after graceful_timeout")
            assert client.recv(100) == b""  # its request was cut: the connection closed
        wait_for(lambda: "still serving" in server.text(), what="the kill logged")
        assert len(server.ready_workers(1)) == 1
