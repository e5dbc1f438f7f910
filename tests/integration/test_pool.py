"""The pool as a user runs it: ``prefork serve`` in its own process, real sockets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from helpers import ROOT, pid_alive, server_process, wait_for


def _echo_line(family: int, address: object, kind: int = socket.SOCK_STREAM) -> bytes:
    with socket.socket(family, kind) as sock:
        sock.settimeout(10)
        sock.connect(address)
        sock.sendall(b"hello prefork\n")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        return data


def _udp_echo(family: int, address: object, client_path: str | None = None) -> bytes:
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        if client_path:
            sock.bind(client_path)  # a unix datagram reply needs an address to go to
        sock.sendto(b"ping prefork", address)
        return sock.recv(4096)


def _ask(address: tuple[str, int], line: bytes) -> socket.socket:
    sock = socket.create_connection(address, timeout=15)
    sock.sendall(line)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


@pytest.mark.parametrize("family", ["tcp4", "tcp6", "unix"])
def test_stream_echo_through_pool(family: str, tmp_path: Path) -> None:
    if family == "tcp6" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    spec = {"tcp4": "127.0.0.1:0", "tcp6": "[::1]:0", "unix": f"unix:{tmp_path}/echo.sock"}[family]
    with server_process("serve", "workers.echo:LineEcho", "-b", spec, "-w", "2") as server:
        server.wait_workers(2)
        if family == "unix":
            assert _echo_line(socket.AF_UNIX, f"{tmp_path}/echo.sock") == b"hello prefork\n"
        else:
            af = socket.AF_INET6 if family == "tcp6" else socket.AF_INET
            assert _echo_line(af, server.tcp_address()) == b"hello prefork\n"
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    if family == "unix":
        assert not (tmp_path / "echo.sock").exists(), "the master removes its socket file"


@pytest.mark.parametrize("family", ["udp", "unix-dgram"])
def test_datagram_echo_through_pool(family: str, tmp_path: Path) -> None:
    path = f"{tmp_path}/dgram.sock"
    spec = "udp://127.0.0.1:0" if family == "udp" else f"unix-dgram:{path}"
    with server_process("serve", "workers.udp_echo:DatagramEcho", "-b", spec, "-w", "2") as server:
        server.wait_workers(2)
        for i in range(5):
            if family == "udp":
                reply = _udp_echo(socket.AF_INET, server.tcp_address())
            else:
                reply = _udp_echo(socket.AF_UNIX, path, f"{tmp_path}/client{i}.sock")
            assert reply == b"ping prefork"
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


@pytest.mark.parametrize("mode", ["prefork", "fork", "thread", "sync"])
def test_same_handler_in_every_mode(mode: str) -> None:
    with server_process("serve", "workers.echo:LineEcho", "-b", "127.0.0.1:0", "--mode", mode) as s:
        address = s.tcp_address()
        assert s.wait_line(rf"mode {mode}")
        for _ in range(3):
            assert _echo_line(socket.AF_INET, address) == b"hello prefork\n"
        s.signal(signal.SIGTERM)
        assert s.wait() == 0


def test_killed_worker_is_replaced_and_pool_keeps_serving() -> None:
    with server_process("serve", "tests.apps.slow:Pid", "-b", "127.0.0.1:0", "-w", "2") as server:
        address = server.tcp_address()
        before = server.wait_workers(2)
        victim = before[0].pid
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: not pid_alive(victim), what="the killed worker to go")
        after = server.wait_workers(2)
        assert victim not in {p.pid for p in after}
        served = {int(_read_all(socket.create_connection(address, timeout=10))) for _ in range(20)}
        assert served <= {p.pid for p in after}
        assert server.wait_line(rf"pid {victim}\) died: killed by SIGKILL; replacing it")


def test_workers_lead_their_own_process_groups() -> None:
    with server_process("serve", "-b", "127.0.0.1:0", "-w", "2") as server:
        workers = server.wait_workers(2)
        master_group = os.getpgid(server.pid)
        for worker in workers:
            assert os.getpgid(worker.pid) == worker.pid != master_group
            # stdin is /dev/null: a worker outside the foreground group never reads the tty
            assert os.readlink(f"/proc/{worker.pid}/fd/0") == "/dev/null"


def test_master_sigkill_leaves_no_worker() -> None:
    with server_process("serve", "-b", "127.0.0.1:0", "-w", "3") as server:
        workers = server.wait_workers(3)
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        # Orphans are reparented to an init that may reap late: a zombie counts as gone.
        wait_for(
            lambda: not any(pid_alive(w.pid) for w in workers), timeout=1.0,
            what="every worker to die within a second of its master",
        )


def test_sigterm_lets_the_request_in_flight_finish() -> None:
    with server_process("serve", "tests.apps.slow:Slow", "-b", "127.0.0.1:0", "-w", "1") as server:
        address = server.tcp_address()
        server.wait_workers(1)
        client = _ask(address, b"2.0\n")
        assert client.recv(8) == b"started\n"
        server.signal(signal.SIGTERM)
        # The master closes its listener at once, long before the request ends (the busy
        # worker's copy goes when it exits).
        master = psutil.Process(server.pid)
        wait_for(lambda: not [c for c in master.net_connections("tcp")
                              if c.status == psutil.CONN_LISTEN],
                 timeout=1.0, what="the master's listener to close")
        rest = _read_all(client)
        client.close()
        assert rest.startswith(b"done ")
        assert server.wait() == 0


def test_sigint_stops_at_once_even_with_a_request_in_flight() -> None:
    with server_process("serve", "tests.apps.slow:Slow", "-b", "127.0.0.1:0", "-w", "1") as server:
        address = server.tcp_address()
        server.wait_workers(1)
        client = _ask(address, b"60\n")
        assert client.recv(8) == b"started\n"
        start = time.monotonic()
        server.signal(signal.SIGINT)
        assert server.wait(timeout=10) == 0
        assert time.monotonic() - start < 5
        assert _read_all(client) == b""  # the request was abandoned, not finished
        client.close()


def test_graceful_timeout_kills_what_is_left() -> None:
    args = ("serve", "tests.apps.slow:Slow", "-b", "127.0.0.1:0", "-w", "1", "--graceful-timeout",
            "0.5")
    with server_process(*args) as server:
        address = server.tcp_address()
        worker = server.wait_workers(1)[0]
        client = _ask(address, b"60\n")
        assert client.recv(8) == b"started\n"
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
        assert not pid_alive(worker.pid)
        assert server.wait_line(r"killing 1 worker still running")
        client.close()


def test_killing_a_worker_takes_its_subprocesses() -> None:
    args = ("serve", "tests.apps.slow:SpawnsChild", "-b", "127.0.0.1:0", "-w", "1")
    with server_process(*args) as server:
        address = server.tcp_address()
        server.wait_workers(1)
        client = _ask(address, b"")
        worker_pid, child_pid = map(int, client.makefile().readline().split())
        assert pid_alive(child_pid)
        os.kill(worker_pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(child_pid), timeout=5, what="the handler's subprocess")
        client.close()
        server.wait_workers(1)


def test_handler_errors_are_logged_through_logging() -> None:
    with server_process("serve", "tests.apps.slow:Fails", "-b", "127.0.0.1:0", "-w", "1") as server:
        address = server.tcp_address()
        server.wait_workers(1)
        _read_all(_ask(address, b"x\n"))
        line = server.wait_line(r"ERROR prefork\.worker: worker \(pid \d+\) error while handling")
        assert line
        assert server.wait_line(r"RuntimeError: handler exploded on purpose")
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


def test_simple_http_request_handler_serves_files(tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_bytes(b"static bytes\n" * 1000)
    env = {"PYTHONPATH": str(ROOT)}
    with server_process("serve", "http.server:SimpleHTTPRequestHandler", "-b", "127.0.0.1:0",
                        "-w", "2", cwd=tmp_path, env=env) as server:
        url = server.address()
        server.wait_workers(2)
        for _ in range(4):
            with urllib.request.urlopen(url + "hello.txt", timeout=10) as response:
                assert response.status == 200
                assert response.read() == b"static bytes\n" * 1000
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(url + "missing.txt", timeout=10)
        assert missing.value.code == 404
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


def test_boot_failure_stops_with_distinct_status_and_bounded_spawns(tmp_path: Path) -> None:
    counter = tmp_path / "spawns"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests/apps/bootfail.py"), str(counter)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 3, proc.stderr
    assert "workers fail to boot: 5 in a row" in proc.stderr
    spawns = counter.read_text().count("spawn")
    # 3 at start, then one probe at a time until 5 failures in a row.
    assert 5 <= spawns <= 7, spawns
    assert "Traceback" in proc.stderr  # each failure's cause is logged


def test_several_listeners_are_all_served_by_every_worker(tmp_path: Path) -> None:
    path = f"{tmp_path}/second.sock"
    args = ("serve", "workers.echo:LineEcho", "-b", "127.0.0.1:0", "-b", f"unix:{path}", "-w", "2")
    with server_process(*args) as server:
        first = server.wait_line(r"serving \S+ on 127\.0\.0\.1:(\d+) unix:")
        server.wait_workers(2)
        for _ in range(3):
            assert _echo_line(socket.AF_INET, ("127.0.0.1", int(first.group(1)))) == (
                b"hello prefork\n"
            )
            assert _echo_line(socket.AF_UNIX, path) == b"hello prefork\n"
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    assert not os.path.exists(path)
