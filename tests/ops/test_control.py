"""prefork.ops.control: a real ControlServer driven by a select loop in a thread, real clients."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import selectors
import shutil
import signal
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from prefork.ops.control import (
    PERMISSION_DENIED,
    ControlError,
    ControlServer,
    Reply,
    Request,
    request,
    scale_target,
    validate,
)
from prefork.ops.endpoint import Endpoint

TIMEOUT = 10.0
LOOP_LIMIT = 30.0  # seconds a test's server loop may run at most
NOBODY = 65534


# --- helpers -----------------------------------------------------------------------------------


class FakeMaster:
    """What the master's handle() would do, recorded."""

    def __init__(self) -> None:
        self.size = 2
        self.calls: list[Request] = []
        self.fail: Exception | None = None

    def handle(self, req: Request) -> Reply:
        self.calls.append(req)
        if self.fail is not None:
            raise self.fail
        command = req["command"]
        if command == "scale":
            self.size = scale_target(req["workers"], self.size)
            return {"workers": self.size}
        if command == "stop":
            return {"stopping": "graceful" if req["graceful"] else "quick"}
        if command == "reload":
            return {"reloading": True}
        return {"pid": os.getpid(), "workers": self.size}


def loop_turn(sel: selectors.BaseSelector, server: Endpoint, limit: float) -> bool:
    """One turn of the master's loop in miniature: wait (no longer than the server's deadline
    and ``limit``), dispatch ``key.data(mask)``, expire.  False once the stop fd is readable."""
    timeout = limit
    if (deadline := server.deadline()) is not None:
        timeout = min(timeout, max(0.0, deadline - time.monotonic()))
    for key, mask in sel.select(timeout):
        if not callable(key.data):
            return False
        key.data(mask)
    server.expire(time.monotonic())
    return True


class Loop:
    """The master's select loop in miniature, in a thread: the server plus a stop pipe, bounded.
    ``turns`` records how long each turn's dispatch took (the loop must never be held up)."""

    def __init__(self, server: Endpoint) -> None:
        self.server = server
        self.stop_r, self.stop_w = os.pipe()
        self.error: BaseException | None = None
        self.longest_dispatch = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + LOOP_LIMIT
        try:
            with selectors.DefaultSelector() as sel:
                self.server.register(sel)
                sel.register(self.stop_r, selectors.EVENT_READ)
                while (remaining := deadline - time.monotonic()) > 0:
                    if not loop_turn(sel, self.server, remaining):
                        return
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            self.server.close()  # before its selector goes

    def stop(self) -> None:
        os.write(self.stop_w, b"x")
        self.thread.join(TIMEOUT)
        os.close(self.stop_r)
        os.close(self.stop_w)
        assert not self.thread.is_alive()
        assert self.error is None, f"the loop raised {self.error!r}"


@pytest.fixture
def master() -> FakeMaster:
    return FakeMaster()


@pytest.fixture
def served(tmp_path: Path, master: FakeMaster) -> Iterator[str]:
    """The path of a control socket served by a loop thread."""
    path = str(tmp_path / "ctl")
    with ControlServer(path, master.handle) as server:
        loop = Loop(server)
        try:
            yield path
        finally:
            loop.stop()


def raw_exchange(path: str, payload: bytes | None, timeout: float = TIMEOUT) -> bytes:
    """Send ``payload`` (None: nothing, just half-close) and read until EOF."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        if payload is not None:
            sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def in_child(fn: Callable[[], object], timeout: float = TIMEOUT) -> Any:
    """Run ``fn`` in a forked child and return its JSON-able result; the child is always reaped."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            os.close(r)
            try:
                result: dict[str, object] = {"value": fn()}
            except BaseException as exc:
                result = {"error": f"{type(exc).__name__}: {exc}"}
            os.write(w, json.dumps(result).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    deadline = time.monotonic() + timeout
    data = b""
    pidfd = os.pidfd_open(pid)
    try:
        while select.select([r], [], [], max(0.0, deadline - time.monotonic()))[0]:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
        if not select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(r)
        os.close(pidfd)
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    assert code == 0, f"child exited with {code}, output {data!r}"
    result = json.loads(data)
    if "error" in result:
        raise AssertionError(f"in the child: {result['error']}")
    return result["value"]


# --- the protocol ------------------------------------------------------------------------------


def test_commands_round_trip(served: str, master: FakeMaster) -> None:
    assert request(served, {"command": "status"}) == {
        "ok": True, "pid": os.getpid(), "workers": 2,
    }
    assert request(served, {"command": "scale", "workers": "+1"}) == {"ok": True, "workers": 3}
    assert request(served, {"command": "scale", "workers": "-1"}) == {"ok": True, "workers": 2}
    assert request(served, {"command": "scale", "workers": 5}) == {"ok": True, "workers": 5}
    assert request(served, {"command": "reload"}) == {"ok": True, "reloading": True}
    assert request(served, {"command": "stop", "graceful": False}) == {
        "ok": True, "stopping": "quick",
    }
    assert request(served, {"command": "stop"}) == {"ok": True, "stopping": "graceful"}
    assert [c["command"] for c in master.calls] == [
        "status", "scale", "scale", "scale", "reload", "stop", "stop",
    ]


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ({"command": "relaod"}, "unknown command 'relaod'"),
        ({"nothing": 1}, '"command"'),
        ({"command": "scale"}, "scale needs"),
        ({"command": "scale", "workers": "lots"}, '"+N"/"-N"'),
        ({"command": "scale", "workers": 0}, "at least 1"),
        ({"command": "scale", "workers": True}, "scale needs"),
        ({"command": "stop", "graceful": "yes"}, '"graceful"'),
        ({"command": "scale", "workers": "+" + "9" * 5000}, '"+N"/"-N"'),  # int() would fail
        ({"command": "scale", "workers": "+\u00b2"}, '"+N"/"-N"'),  # "²".isdigit()
        ({"command": "scale", "workers": 10**30}, "at most"),
    ],
)
def test_invalid_requests_get_an_error_reply(
    served: str, master: FakeMaster, command: Request, error: str
) -> None:
    reply = request(served, command)
    assert reply["ok"] is False
    assert error in reply["error"]
    assert master.calls == []  # the handler only sees valid requests


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"not json\n", "invalid JSON"),
        (b"[1, 2]\n", "JSON object"),
        (b"", "invalid JSON"),
        (b"[" * 1100 + b"\n", "nested too deeply"),  # RecursionError in json.loads
        (b"1" * 5000 + b"\n", "invalid JSON"),  # past the int digits limit
        (b'{"command": "status"}', None),  # no newline, but EOF ends the line
    ],
)
def test_raw_payloads(served: str, payload: bytes, error: str | None) -> None:
    data = raw_exchange(served, payload)
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    reply = json.loads(data)
    if error is None:
        assert reply["ok"] is True
    else:
        assert reply["ok"] is False and error in reply["error"]


def test_validate_and_scale_target() -> None:
    assert validate({"command": "stop"}) == {"command": "stop", "graceful": True}
    assert scale_target("+2", 3) == 5
    assert scale_target("-1", 3) == 2
    assert scale_target(7, 3) == 7


def test_handler_errors_are_replied_and_logged(
    served: str, master: FakeMaster, caplog: pytest.LogCaptureFixture
) -> None:
    master.fail = RuntimeError("kaboom")
    with caplog.at_level(logging.ERROR, logger="prefork.master"):
        reply = request(served, {"command": "reload"})
    assert reply == {"ok": False, "error": "RuntimeError: kaboom"}
    failures = [r for r in caplog.records if r.exc_info is not None]
    assert failures and "kaboom" in str(failures[0].exc_info[1])  # type: ignore[index]
    master.fail = None
    assert request(served, {"command": "status"})["ok"] is True  # still serving


def test_handler_returning_garbage(tmp_path: Path) -> None:
    path = str(tmp_path / "ctl")
    replies: list[Any] = [["not", "a", "dict"], {"x": object()}]
    with ControlServer(path, lambda req: replies.pop(0)) as server:
        loop = Loop(server)
        try:
            first = request(path, {"command": "status"})
            second = request(path, {"command": "status"})
        finally:
            loop.stop()
    assert first["ok"] is False and "TypeError" in first["error"]
    assert second["ok"] is False and "TypeError" in second["error"]


# --- the socket file ---------------------------------------------------------------------------


def test_socket_is_created_0600_whatever_the_umask(tmp_path: Path, master: FakeMaster) -> None:
    path = str(tmp_path / "ctl")
    old = os.umask(0)
    try:
        with ControlServer(path, master.handle):
            assert os.umask(0) == 0  # our umask is back once the server is bound
            mode = os.stat(path).st_mode
    finally:
        os.umask(old)
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_stale_socket_file_is_replaced(tmp_path: Path, master: FakeMaster) -> None:
    path = str(tmp_path / "ctl")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(path)  # a master that died without removing its file
    os.chmod(path, 0o644)
    with ControlServer(path, master.handle) as server:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # a new file (inodes get reused)
        loop = Loop(server)
        try:
            assert request(path, {"command": "status"})["ok"] is True
        finally:
            loop.stop()


def test_live_socket_is_refused(tmp_path: Path, master: FakeMaster) -> None:
    path = str(tmp_path / "ctl")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(path)
        live.listen()
        ident = os.stat(path).st_ino
        with pytest.raises(ControlError, match="already listening"):
            ControlServer(path, master.handle)
        assert os.stat(path).st_ino == ident  # untouched
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.connect(path)  # and still the live server's


def test_path_that_is_not_a_socket_is_refused(tmp_path: Path, master: FakeMaster) -> None:
    path = tmp_path / "ctl"
    path.write_text("precious")
    with pytest.raises(ControlError, match="not a socket"):
        ControlServer(str(path), master.handle)
    assert path.read_text() == "precious"


def test_close_removes_only_its_own_file(tmp_path: Path, master: FakeMaster) -> None:
    path = str(tmp_path / "ctl")
    ControlServer(path, master.handle).close()
    assert not os.path.exists(path)

    server = ControlServer(path, master.handle)
    os.unlink(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as successor:
        successor.bind(path)  # a new master took the path over
        ident = os.stat(path).st_ino
        server.close()
        server.close()  # idempotent
        assert os.stat(path).st_ino == ident


# --- bounded service ---------------------------------------------------------------------------


def test_silent_client_is_answered_at_its_deadline(tmp_path: Path, master: FakeMaster) -> None:
    path = str(tmp_path / "ctl")
    with ControlServer(path, master.handle) as server, socket.socket(
        socket.AF_UNIX, socket.SOCK_STREAM
    ) as silent, selectors.DefaultSelector() as sel:
        server.register(sel)
        silent.settimeout(TIMEOUT)
        silent.connect(path)
        start = time.monotonic()
        turns = 0
        # In this thread, as the master would: every turn comes back at once.
        while not select.select([silent], [], [], 0)[0]:
            assert time.monotonic() - start < ControlServer.timeout + 0.5
            turn_start = time.monotonic()
            assert loop_turn(sel, server, limit=0.05)
            turns += 1
            deadline = server.deadline()
            if deadline is not None and deadline > time.monotonic():
                assert time.monotonic() - turn_start < 0.2  # no turn waits on the client
        elapsed = time.monotonic() - start
        assert ControlServer.timeout * 0.9 <= elapsed < ControlServer.timeout + 0.5
        assert turns > 1
        reply = json.loads(silent.recv(65536))
        assert reply["ok"] is False and "no request" in reply["error"]
        assert master.calls == []
        assert server.deadline() is None  # the connection is gone
        server.close()


def test_loop_serves_others_after_a_silent_client(served: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(served)
        start = time.monotonic()
        assert request(served, {"command": "status"})["ok"] is True
        assert time.monotonic() - start < ControlServer.timeout + 1.0


# --- the client --------------------------------------------------------------------------------


def test_client_missing_socket(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="no control socket at"):
        request(str(tmp_path / "absent"), {"command": "status"})


def test_client_stale_socket_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "ctl")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(path)
    with pytest.raises(ControlError, match="refused"):
        request(path, {"command": "status"})


@contextlib.contextmanager
def fake_server(path: str, reply: bytes | None) -> Iterator[None]:
    """Accepts one connection and answers ``reply`` raw (None: never answers)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    done = threading.Event()

    def serve() -> None:
        listener.settimeout(TIMEOUT)
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                if reply is not None:
                    conn.sendall(reply)
                else:
                    done.wait(TIMEOUT)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(TIMEOUT)
        listener.close()
        assert not thread.is_alive()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"<html>oops</html>\n", "not JSON"),
        (b"[1]\n", "not a JSON object"),
        (b"", "without a reply"),
    ],
)
def test_client_bad_replies(tmp_path: Path, reply: bytes, error: str) -> None:
    path = str(tmp_path / "ctl")
    with fake_server(path, reply), pytest.raises(ControlError, match=error):
        request(path, {"command": "status"})


def test_client_timeout(tmp_path: Path) -> None:
    path = str(tmp_path / "ctl")
    with fake_server(path, None):
        start = time.monotonic()
        with pytest.raises(ControlError, match="no reply"):
            request(path, {"command": "status"}, timeout=0.3)
        assert time.monotonic() - start < 2.0


# --- peer credentials --------------------------------------------------------------------------


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory other users can traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="prefork-ctl-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def as_nobody(path: str) -> Callable[[], object]:
    def child() -> object:
        os.setgid(NOBODY)
        os.setgroups([])
        os.setuid(NOBODY)
        try:
            return {"reply": request(path, {"command": "stop", "graceful": False})}
        except ControlError as exc:
            return {"control_error": str(exc)}

    return child


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another uid")
def test_other_users_are_refused(public_dir: Path, master: FakeMaster) -> None:
    path = str(public_dir / "ctl")
    with ControlServer(path, master.handle) as server:
        loop = Loop(server)
        try:
            # Layer 1, the file mode: nobody cannot even connect to a 0600 socket.
            got = in_child(as_nobody(path))
            assert "permission denied" in got["control_error"]

            # Layer 2, SO_PEERCRED: with the file opened up, the server itself refuses.
            os.chmod(path, 0o666)
            got = in_child(as_nobody(path))
            assert got == {"reply": PERMISSION_DENIED}
            assert master.calls == []  # the stop never reached the master

            # Root is served.
            assert request(path, {"command": "status"})["ok"] is True
            assert [c["command"] for c in master.calls] == ["status"]
        finally:
            loop.stop()
