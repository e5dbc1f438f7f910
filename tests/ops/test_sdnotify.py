"""prefork.ops.sdnotify: a bound datagram socket stands in for systemd; fds are passed for real."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import Proc, free_port, in_child, wait_for
from prefork.ops import sdnotify
from prefork.ops.sdnotify import Notifier, listen_fds, listen_fds_with_names

ROOT = Path(__file__).resolve().parent.parent.parent
TIMEOUT = 10.0


# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket bound at a path, playing systemd's notify socket."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(TIMEOUT)
        yield path, sock


def messages(sock: socket.socket, count: int) -> list[list[str]]:
    """The next ``count`` datagrams, each split into its lines."""
    out = []
    for _ in range(count):
        data = sock.recv(65536)
        assert data.endswith(b"\n")
        out.append(data.decode().splitlines())
    return out


def place_fds(fds: list[int]) -> None:
    """In a child: make ``fds`` appear as 3, 4, ... (as systemd passes them)."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 30) for fd in fds]
    for target, fd in enumerate(high, start=sdnotify.LISTEN_FDS_START):
        os.dup2(fd, target)
        os.close(fd)


def describe(sock: socket.socket) -> dict[str, object]:
    return {
        "family": int(sock.family),
        "type": int(sock.type),
        "address": sock.getsockname(),
        "inheritable": sock.get_inheritable(),
        "fileno": sock.fileno(),
    }


# --- Notifier ----------------------------------------------------------------------------------


def test_messages_reach_the_manager_in_order(manager: tuple[str, socket.socket]) -> None:
    path, sock = manager
    notifier = Notifier(env={"NOTIFY_SOCKET": path})
    assert notifier.enabled
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.ready("serving 4 workers")
    assert notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.status("reloaded")
    assert notifier.mainpid(4242)
    assert notifier.stopping()
    assert notifier.notify(READY=True, STATUS="two\nlines", ERRNO=0)
    assert notifier.send("WATCHDOG=1", "STATUS=raw")

    got = messages(sock, 7)
    assert got[0] == ["READY=1", "STATUS=serving 4 workers"]
    assert got[1][0] == "RELOADING=1"
    key, _, usec = got[1][1].partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(usec) <= after
    assert got[2:] == [
        ["STATUS=reloaded"],
        ["MAINPID=4242"],
        ["STOPPING=1"],
        ["READY=1", "STATUS=two lines", "ERRNO=0"],
        ["WATCHDOG=1", "STATUS=raw"],
    ]


def test_abstract_socket_address() -> None:
    name = f"prefork-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(TIMEOUT)
        notifier = Notifier(env={"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert sock.recv(65536) == b"READY=1\n"


def test_no_socket_means_no_op(tmp_path: Path) -> None:
    for env in ({}, {"NOTIFY_SOCKET": ""}):
        notifier = Notifier(env=env)
        assert not notifier.enabled
        assert notifier.ready("x") is False
        assert notifier.notify(READY=1) is False


def test_unset_removes_the_variable(manager: tuple[str, socket.socket]) -> None:
    path, sock = manager
    env = {"NOTIFY_SOCKET": path, "OTHER": "1"}
    notifier = Notifier(env=env, unset=True)
    assert env == {"OTHER": "1"}
    assert notifier.stopping()  # the address was kept
    assert sock.recv(65536) == b"STOPPING=1\n"


def test_send_failure_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    with caplog.at_level(logging.DEBUG, logger="prefork.master"):
        assert notifier.ready() is False
    assert any("sd_notify" in r.getMessage() for r in caplog.records)


def test_bad_lines_are_a_programming_error(manager: tuple[str, socket.socket]) -> None:
    notifier = Notifier(manager[0])
    with pytest.raises(ValueError):
        notifier.send("READY=1\nSTATUS=x")
    with pytest.raises(ValueError):
        notifier.send("READY")


def test_unsupported_address_disables() -> None:
    assert not Notifier("vsock:2:1234").enabled
    assert not Notifier("relative/path").enabled


# --- listen_fds --------------------------------------------------------------------------------


def test_listen_fds_ignores_fds_meant_for_another_process() -> None:
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b"}
    assert listen_fds(env) == []
    assert env == {}  # unset even when nothing was taken
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "1"}
    assert listen_fds(env, unset=False) == []
    assert env == {"LISTEN_PID": "1", "LISTEN_FDS": "1"}
    assert listen_fds({}) == []


def test_listen_fds_rejects_malformed_variables() -> None:
    with pytest.raises(ValueError, match="LISTEN_PID"):
        listen_fds({"LISTEN_PID": "abc", "LISTEN_FDS": "1"})
    with pytest.raises(ValueError, match="LISTEN_FDS"):
        listen_fds({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "x"})


def test_listen_fds_takes_passed_sockets_with_names() -> None:
    """fds 3 and 4 in a child are a TCP listener and a UDP socket, as systemd would pass them."""
    with contextlib.ExitStack() as stack:
        tcp = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
        udp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        udp.bind(("127.0.0.1", 0))
        # Queued in the backlog before the child exists: the child accepts it from fd 3.
        client = stack.enter_context(socket.create_connection(tcp.getsockname(), TIMEOUT))
        client.sendall(b"ping")

        def child() -> object:
            place_fds([tcp.fileno(), udp.fileno()])
            os.environ.update(
                LISTEN_PID=str(os.getpid()), LISTEN_FDS="2", LISTEN_FDNAMES="web:dgram"
            )
            pairs = listen_fds_with_names()  # os.environ, unset=True
            left = [k for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES") if k in os.environ]
            web = pairs[0][1]
            web.settimeout(TIMEOUT)
            conn, _ = web.accept()
            with conn:
                conn.sendall(b"pong:" + conn.recv(4))
            return {"names": [n for n, _ in pairs], "socks": [describe(s) for _, s in pairs],
                    "left": left}

        got = in_child(child)
        assert client.recv(100) == b"pong:ping"
        assert got["names"] == ["web", "dgram"]
        assert got["left"] == []
        web, dgram = got["socks"]
        assert (web["family"], web["type"], web["fileno"]) == (
            socket.AF_INET, socket.SOCK_STREAM, 3,
        )
        assert tuple(web["address"]) == tcp.getsockname()
        assert (dgram["family"], dgram["type"], dgram["fileno"]) == (
            socket.AF_INET, socket.SOCK_DGRAM, 4,
        )
        assert tuple(dgram["address"]) == udp.getsockname()
        assert not web["inheritable"] and not dgram["inheritable"]  # close-on-exec, as libsystemd


def test_listen_fds_unix_socket_without_names(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
        unix.bind(path)
        unix.listen()

        def child() -> object:
            place_fds([unix.fileno()])
            env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1"}
            pairs = listen_fds_with_names(env, unset=False)
            return {"names": [n for n, _ in pairs], "socks": [describe(s) for _, s in pairs],
                    "env": env}

        got = in_child(child)
        assert got["names"] == ["unknown"]
        assert got["socks"][0]["family"] == socket.AF_UNIX
        assert got["socks"][0]["address"] == path
        assert got["env"] == {"LISTEN_PID": got["env"]["LISTEN_PID"], "LISTEN_FDS": "1"}


def test_listen_fds_refuses_a_non_socket() -> None:
    def child() -> object:
        r, _w = os.pipe()
        place_fds([r])
        env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1"}
        try:
            listen_fds(env)
        except OSError as exc:
            os.fstat(3)  # still open: nothing was wrapped and closed
            return {"errno": exc.errno, "env": env}
        return {"errno": None}

    got = in_child(child)
    assert got == {"errno": errno.ENOTSOCK, "env": {}}


ACTIVATED_CHILD = textwrap.dedent(
    """
    import json, os, socket, sys
    sys.path.insert(0, sys.argv[1])
    from prefork.ops.sdnotify import listen_fds_with_names
    listen_pid = os.environ.get("LISTEN_PID")
    pairs = listen_fds_with_names()
    name, sock = pairs[0]
    sock.settimeout(10)
    conn, _ = sock.accept()
    with conn:
        conn.settimeout(10)
        request = conn.recv(100).decode()
        conn.sendall(json.dumps({
            "request": request, "names": [n for n, _ in pairs],
            "listen_pid_was_mine": listen_pid == str(os.getpid()),
            "family": int(sock.family), "port": sock.getsockname()[1],
            "left": [k for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES") if k in os.environ],
        }).encode())
    """
)


class _Exited(Exception):
    pass


@pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None, reason="systemd-socket-activate not on PATH"
)
def test_real_systemd_socket_activate() -> None:
    for _ in range(3):  # the free port may be taken between probe and bind: try another
        port = free_port()
        proc = Proc(["systemd-socket-activate", "-l", f"127.0.0.1:{port}", "--fdname=web",
                     sys.executable, "-c", ACTIVATED_CHILD, str(ROOT)])

        def connect(proc: Proc = proc, port: int = port) -> socket.socket | None:
            if proc.returncode is not None:
                raise _Exited
            try:
                return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            except ConnectionRefusedError:
                return None  # not listening yet

        try:
            try:
                client = wait_for(connect, TIMEOUT, what="systemd-socket-activate listening")
            except _Exited:
                continue  # it could not bind: another port
            assert client is not None
            with client:
                client.sendall(b"hello")
                data = b""
                while chunk := client.recv(65536):
                    data += chunk
            reply = json.loads(data)
            assert proc.wait(TIMEOUT) == 0
            assert reply == {
                "request": "hello", "names": ["web"], "listen_pid_was_mine": True,
                "family": int(socket.AF_INET), "port": port, "left": [],
            }
            return
        finally:
            proc.kill()
    pytest.fail("could not find a free port for systemd-socket-activate")
