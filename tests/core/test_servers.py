"""The socketserver contract of the Prefork classes, in process: the test is the master."""

from __future__ import annotations

import contextlib
import errno
import gc
import http.server
import os
import socket
import socketserver
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import prefork
from helpers import forked, pid_alive, wait_exit, wait_for
from prefork.core.servers import is_client_gone
from workers.echo import LineEcho


class PidHandler(socketserver.StreamRequestHandler):
    ready_when = prefork.Ready.ACCEPTED  # it speaks first: no waiting for the client's bytes

    def handle(self) -> None:
        self.wfile.write(b"%d\n" % os.getpid())


class RecordingServer(prefork.PreforkTCPServer):
    """Knows its workers' pids through the hooks (the master side)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.live: dict[int, int] = {}
        self.ready = threading.Event()
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def pre_fork(self, worker: prefork.WorkerInfo) -> None:
        pass

    def worker_exit(self, worker: prefork.WorkerInfo, status: int) -> None:
        self.live.pop(worker.slot, None)


def ask(address: tuple[str, int], line: bytes = b"x\n") -> bytes:
    with socket.create_connection(address, timeout=10) as sock:
        # The server may close first (a refused request): then there is nothing to shut.
        with contextlib.suppress(OSError):
            sock.sendall(line)
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        return data


def read_pid(address: tuple[str, int]) -> int:
    with socket.create_connection(address, timeout=10) as sock:
        return int(sock.makefile("rb").readline())


def worker_pids(server_pid: int) -> set[int]:
    import psutil

    pids = set()
    for proc in psutil.Process(server_pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if proc.status() != psutil.STATUS_ZOMBIE:
                pids.add(proc.pid)
    return pids


@contextlib.contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[threading.Thread]:
    """serve_forever() in a thread; shutdown() and server_close() on the way out."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        server.shutdown()
        thread.join(30)
        server.server_close()


def wait_pool(size: int) -> set[int]:
    return wait_for(lambda: (p := worker_pids(os.getpid())) and len(p) == size and p, what="pool")


def test_serve_forever_in_a_thread_and_shutdown() -> None:
    server = prefork.PreforkTCPServer(("127.0.0.1", 0), LineEcho, workers=2)
    with serving(server) as thread:
        wait_pool(2)
        assert ask(server.server_address, b"abc\n") == b"abc\n"
    assert not thread.is_alive()
    assert server.fileno() == -1
    assert worker_pids(os.getpid()) == set()


def test_shutdown_before_serve_forever_returns_at_once() -> None:
    server = prefork.PreforkTCPServer(("127.0.0.1", 0), LineEcho, workers=1)
    caller = threading.Thread(target=server.shutdown)
    caller.start()
    server.serve_forever()  # returns: shutdown() was requested before it started
    caller.join(10)
    assert not caller.is_alive()
    server.server_close()


def test_server_close_while_serving_leaves_no_worker() -> None:
    server = prefork.PreforkTCPServer(("127.0.0.1", 0), PidHandler, workers=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    pids = wait_pool(2)
    server.server_close()
    thread.join(10)
    assert not thread.is_alive()
    assert server.fileno() == -1
    assert not any(pid_alive(pid) for pid in pids)


def test_context_manager_closes() -> None:
    with prefork.PreforkTCPServer(("127.0.0.1", 0), LineEcho, workers=1) as server:
        assert server.fileno() >= 0
    assert server.fileno() == -1


def test_unrelated_child_is_not_reaped() -> None:
    # A child the application forked in the master, already exited (a zombie until its owner
    # collects it): the master's reaping must leave it alone.
    with forked(lambda: 7) as app_child:
        server = prefork.PreforkTCPServer(("127.0.0.1", 0), PidHandler, workers=2)
        with serving(server):
            pids = wait_pool(2)
            victim = next(iter(pids))
            os.kill(victim, 9)
            wait_for(lambda: victim not in worker_pids(os.getpid()) and len(
                worker_pids(os.getpid())) == 2, what="the replacement")
            assert read_pid(server.server_address) in worker_pids(os.getpid())
        # Still ours to collect (the master did not reap it), with its own status.
        assert wait_exit(app_child) == 7


def open_sockets() -> set[str]:
    """The sockets this process holds (ignoring fds other tests' garbage may still close)."""
    gc.collect()
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:"):
                found.add(f"{fd}:{target}")
    return found


def test_failed_binds_leak_no_file_descriptor(tmp_path: Path) -> None:
    with prefork.PreforkTCPServer(("127.0.0.1", 0), LineEcho, workers=1) as busy, \
            prefork.PreforkUnixStreamServer(str(tmp_path / "live.sock"), LineEcho, workers=1):
        before = open_sockets()
        for _ in range(512):
            with pytest.raises(OSError) as exc:
                prefork.PreforkTCPServer(busy.server_address, LineEcho, workers=1)
            assert exc.value.errno == errno.EADDRINUSE
        for _ in range(512):
            with pytest.raises(OSError) as exc:
                prefork.PreforkUnixStreamServer(str(tmp_path / "live.sock"), LineEcho, workers=1)
            assert exc.value.errno == errno.EADDRINUSE
        assert open_sockets() <= before


def test_stale_unix_socket_is_replaced_and_removed_at_close(tmp_path: Path) -> None:
    path = str(tmp_path / "stale.sock")
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)
    dead.close()  # the file stays, nobody listens: a crashed server's leftover
    assert os.path.exists(path)
    server = prefork.PreforkUnixStreamServer(path, LineEcho, workers=1)
    with serving(server):
        wait_pool(1)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(path)
            sock.sendall(b"unix\n")
            assert sock.recv(10) == b"unix\n"
    assert not os.path.exists(path)


def test_unix_path_that_is_not_a_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain-file"
    path.write_text("keep me")
    with pytest.raises(OSError, match="not a socket"):
        prefork.PreforkUnixStreamServer(str(path), LineEcho, workers=1)
    assert path.read_text() == "keep me"


def test_mixin_first_with_http_server() -> None:
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"mixed in")

        def log_message(self, format: str, *args: object) -> None:
            pass

    class MyServer(prefork.PreforkMixIn, http.server.HTTPServer):
        pass

    server = MyServer(("127.0.0.1", 0), Hello, workers=2)
    with serving(server):
        wait_pool(2)
        host, port = server.server_address[:2]
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=10) as response:
            assert response.read() == b"mixed in"


def test_verify_request_and_service_actions_run_in_the_worker(tmp_path: Path) -> None:
    marks = tmp_path / "service_actions"

    class Picky(prefork.PreforkTCPServer):
        def verify_request(self, request: object, client_address: object) -> bool:
            return False  # every connection is refused before the handler runs

        def service_actions(self) -> None:
            with open(marks, "a") as f:
                f.write(f"{os.getpid()}\n")

    server = Picky(("127.0.0.1", 0), LineEcho, workers=1)
    with serving(server):
        (pid,) = wait_pool(1)
        assert ask(server.server_address, b"rejected\n") == b""
        wait_for(lambda: marks.exists() and str(pid) in marks.read_text(), what="service_actions")


def test_pool_size_is_validated() -> None:
    with pytest.raises(ValueError, match="exceeds max_children"):
        prefork.PreforkTCPServer(("127.0.0.1", 0), LineEcho, workers=1000)
    with pytest.raises(ValueError, match="positive integer"):
        prefork.PreforkTCPServer(("127.0.0.1", 0), LineEcho, workers=-1)


def test_default_pool_size_is_the_usable_cpus() -> None:
    with prefork.PreforkTCPServer(("127.0.0.1", 0), LineEcho) as server:
        assert server.workers == min(len(os.sched_getaffinity(0)), server.max_children)


def test_a_failing_pre_fork_is_a_boot_failure_not_a_crash(tmp_path: Path) -> None:
    """An exception in pre_fork (or a refused fork) must not take the running pool down."""
    calls = []

    class Flaky(prefork.PreforkTCPServer):
        def pre_fork(self, worker: prefork.WorkerInfo) -> None:
            calls.append(worker.age)
            if len(calls) == 3:  # the first replacement fails to start, the next one works
                raise RuntimeError("cannot prepare a worker")

    server = Flaky(("127.0.0.1", 0), PidHandler, workers=2)
    with serving(server):
        first = wait_pool(2)
        victim, survivor = sorted(first)
        os.kill(victim, 9)
        wait_for(lambda: len(calls) >= 4 and len(worker_pids(os.getpid())) == 2,
                 what="a replacement after the failed one")
        assert survivor in worker_pids(os.getpid())  # never killed
        assert read_pid(server.server_address) in worker_pids(os.getpid())


@pytest.mark.parametrize(
    ("exc", "gone"),
    [
        (ConnectionResetError(errno.ECONNRESET, "reset"), True),
        (BrokenPipeError(errno.EPIPE, "pipe"), True),
        (ConnectionAbortedError(errno.ECONNABORTED, "aborted"), True),
        (OSError(errno.ENOTCONN, "not connected"), True),
        (TimeoutError("timed out"), True),  # socket.timeout
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), False),  # the handler's backend
        (OSError(errno.EMFILE, "too many open files"), False),
        (ValueError("a bug"), False),
        (None, False),
    ],
)
def test_which_errors_mean_the_client_went_away(exc: BaseException | None, gone: bool) -> None:
    assert is_client_gone(exc) is gone
