"""TTIN / TTOU change the pool size within [1, max_children]; WINCH stops every worker
and keeps the master and its socket, and the connections queued meanwhile are served
once TTIN or HUP brings workers back.

Every server is a real ``python -m prefork serve`` in its own session (see helpers.py);
waits are deadlines on observable things (log lines, pids, bytes received), never sleeps.
"""

from __future__ import annotations

import signal
import socket

from helpers import (
    LOCAL,
    ServerProcess,
    pid_alive,
    pid_of,
    server_process,
    wait_for,
    wait_gone,
)

PID_APP = "tests.apps.liveops:PidHello"


def _signal_pending(pid: int, sig: int) -> bool:
    """True while ``sig`` is pending (sent, not yet delivered) for process ``pid``."""
    bit = 1 << (sig - 1)
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("SigPnd:", "ShdPnd:")) and int(line.split()[1], 16) & bit:
                return True
    return False


def _send_and_deliver(server: ServerProcess, sig: int) -> None:
    server.signal(sig)
    wait_for(lambda: not _signal_pending(server.pid, sig), 5, what=f"{sig!r} to be delivered")

def _next_size_change(server: ServerProcess, start: int) -> str:
    return server.wait_line(r"pool size (\d+ -> \d+)", start=start).group(1)


def _backlog_requests(address: tuple[str, int], count: int) -> list[socket.socket]:
    """Connections made (and requests sent) while nobody accepts: they wait in the backlog."""
    socks = []
    for i in range(count):
        sock = socket.create_connection(address, timeout=15)
        sock.sendall(f"GET /backlog/{i} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        socks.append(sock)
    return socks


def _read_reply(sock: socket.socket) -> tuple[int, int]:
    with sock:
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), int(body)


def test_ttin_ttou_scale_within_bounds_and_winch_pauses() -> None:
    args = ("serve", PID_APP, "-b", LOCAL, "-w", "2", "--max-children", "3")
    with server_process(*args) as server:
        address = server.tcp_address()
        server.ready_workers(2)

        start = server.mark()
        server.signal(signal.SIGTTIN)
        assert _next_size_change(server, start) == "2 -> 3"
        server.ready_workers(3)

        # At max_children a TTIN changes nothing: the next change seen is the TTOU's.
        start = server.mark()
        _send_and_deliver(server, signal.SIGTTIN)
        server.signal(signal.SIGTTOU)
        assert _next_size_change(server, start) == "3 -> 2"
        server.ready_workers(2)

        start = server.mark()
        server.signal(signal.SIGTTOU)
        assert _next_size_change(server, start) == "2 -> 1"
        last = min(server.ready_workers(1))
        assert {pid_of(address) for _ in range(5)} == {last}

        # At one worker a TTOU changes nothing.  WINCH (a higher signal number, so handled
        # after the TTOU even if both are pending at once) logs a line: nothing may come before.
        start = server.mark()
        server.signal(signal.SIGTTOU)
        server.signal(signal.SIGWINCH)
        pause = server.wait_line(r"stopping all workers; HUP or TTIN to resume", start=start)
        server.text()
        before_pause = server.lines[start:server.lines.index(pause.string)]
        assert not [line for line in before_pause if "pool size" in line], before_pause

        # Paused: no worker, but the master and its socket stay; connections queue up.
        wait_gone({last}, "the paused pool's worker")
        wait_for(lambda: not server.live(), what="no worker while paused")
        assert pid_alive(server.pid)
        waiting = _backlog_requests(address, 4)
        assert not server.live()

        start = server.mark()
        server.signal(signal.SIGTTIN)
        assert _next_size_change(server, start) == "1 -> 2"
        resumed = server.ready_workers(2)
        replies = [_read_reply(sock) for sock in waiting]
        assert all(status == 200 for status, _ in replies), replies
        assert {pid for _, pid in replies} <= resumed
        server.stop_ok()


def test_winch_pause_then_hup_serves_the_backlog() -> None:
    with server_process("serve", PID_APP, "-b", LOCAL, "-w", "2") as server:
        address = server.tcp_address()
        old = server.ready_workers(2)
        server.signal(signal.SIGWINCH)
        server.wait_line(r"stopping all workers")
        wait_gone(old, "the paused workers")
        assert pid_alive(server.pid) and not server.live()
        waiting = _backlog_requests(address, 5)

        start = server.reload(2)
        new = server.ready_pids(start)
        replies = [_read_reply(sock) for sock in waiting]
        assert [status for status, _ in replies] == [200] * 5
        assert {pid for _, pid in replies} <= new
        server.stop_ok()
