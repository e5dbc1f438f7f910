"""A graceful stop (TERM) while a keep-alive client has pipelined requests the worker already
holds: those requests were received in full, so the stop must either answer them or say so
(``Connection: close`` on the last response it sends), not close the connection after an
ordinary keep-alive response as if it were idle.
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from helpers import LOCAL, ROOT, server_process, wait_for

PIPELINED = 4


def test_a_graceful_stop_answers_or_refuses_pipelined_requests(tmp_path: Path) -> None:
    with server_process("serve", "tests.apps.slow_http:Slow", "-b", LOCAL, "-w", "1", cwd=tmp_path,
                        env={"PYTHONPATH": str(ROOT)}) as server:
        address = server.tcp_address()
        server.ready_workers(1)
        with socket.create_connection(address, timeout=15) as client:
            client.sendall(b"".join(b"GET /r%d HTTP/1.1\r\nHost: x\r\n\r\n" % i
                                    for i in range(1, PIPELINED + 1)))
            # The first request is in the handler (0.5 s) when TERM arrives.
            wait_for(lambda: "busy" in " ".join(server.workers()[0].cmdline()),
                     what="the worker busy with the first request")
            server.signal(signal.SIGTERM)
            data = b""
            while chunk := client.recv(65536):
                data += chunk
        responses = data.split(b"HTTP/1.1 ")[1:]
        assert responses, data
        answered_all = len(responses) == PIPELINED
        said_close = b"connection: close" in responses[-1].lower()
        assert answered_all or said_close, (
            f"{len(responses)} of {PIPELINED} pipelined requests answered, and the last "
            f"response did not say close: {responses[-1]!r}")
        assert server.wait() == 0
