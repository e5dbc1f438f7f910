"""The pool over servers whose get_request() is not a listening socket's accept (core/pulling.py),
and get_request() wrappers around sockets: real workers, a real SQLite file, real sockets."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import os
import signal
import socket
import socketserver
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import prefork
from helpers import forked, wait_exit, wait_for

ENTRIES = 60


def make_table(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE entries (id INTEGER PRIMARY KEY, body TEXT, taken INTEGER,"
                   " handled INTEGER NOT NULL DEFAULT 0, pid INTEGER)")
        db.executemany("INSERT INTO entries (body) VALUES (?)",
                       [(f"entry {i}",) for i in range(ENTRIES)])
        db.commit()


class EntryHandler(socketserver.BaseRequestHandler):
    """self.request is a table entry: (id, body)."""

    def handle(self) -> None:
        entry_id, body = self.request
        assert body.startswith("entry ")
        db = self.server.db  # type: ignore[attr-defined]
        db.execute("UPDATE entries SET handled = handled + 1, pid = ? WHERE id = ?",
                   (os.getpid(), entry_id))


class TableServer(prefork.PreforkMixIn, socketserver.BaseServer):
    """socketserver's docstring's example: get_request() pops an entry from a SQL table.  No
    fileno(): each worker calls get_request() in a loop, which waits while the table is empty."""

    path: Path

    def load_app(self) -> None:  # in each worker: its own connection
        self.db = sqlite3.connect(self.path, timeout=10, isolation_level=None)

    def get_request(self) -> tuple[Any, Any]:
        while True:
            row = self.db.execute(
                "UPDATE entries SET taken = ? WHERE id IN"
                " (SELECT id FROM entries WHERE taken IS NULL ORDER BY id LIMIT 1)"
                " RETURNING id, body", (os.getpid(),)).fetchone()
            if row is not None:
                return tuple(row), None
            time.sleep(0.02)


class SleepingServer(prefork.PreforkMixIn, socketserver.BaseServer):
    """A get_request() that blocks for ever: only a stop signal ends its wait."""

    def get_request(self) -> tuple[Any, Any]:
        time.sleep(3600)
        raise AssertionError("not reached")


class PipeServer(prefork.PreforkMixIn, socketserver.BaseServer):
    """Offers fileno(): a pipe whose bytes are the requests; get_request() runs on readiness."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)
        super().__init__(*args, **kwargs)

    def fileno(self) -> int:
        return self.r

    def get_request(self) -> tuple[Any, Any]:
        return os.read(self.r, 1), None  # BlockingIOError (an OSError): another took it


@contextlib.contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        server.shutdown()
        thread.join(30)
        server.server_close()
    assert not thread.is_alive()


@pytest.mark.skipif(sqlite3.sqlite_version_info < (3, 35),
                    reason=f"SQLite {sqlite3.sqlite_version} < 3.35 (no UPDATE ... RETURNING)")
def test_table_entries_each_handled_once_by_a_pool_of_two(tmp_path: Path) -> None:
    db_path = tmp_path / "entries.db"
    make_table(db_path)
    TableServer.path = db_path

    def master() -> None:
        # In a child with no other thread: no worker is forked while this test's thread is
        # inside SQLite (its mutexes would stay locked in the worker).
        TableServer(None, EntryHandler, workers=2).serve_forever()

    with contextlib.closing(sqlite3.connect(db_path)) as db:

        def handled() -> int:
            return int(db.execute("SELECT count(*) FROM entries WHERE handled > 0").fetchone()[0])

        with forked(master) as pid:
            wait_for(lambda: handled() == ENTRIES, timeout=30, what="every entry handled")
            os.kill(pid, signal.SIGTERM)
            assert wait_exit(pid) == 0
        rows = db.execute("SELECT handled, taken, pid FROM entries").fetchall()
    assert len(rows) == ENTRIES
    assert all(handled == 1 for handled, _, _ in rows), rows
    assert all(taken == pid for _, taken, pid in rows)  # handled by the worker that took it
    assert pid not in {worker for _, _, worker in rows}  # in the workers, not the master


def test_a_blocked_get_request_does_not_hold_up_shutdown() -> None:
    server = SleepingServer(None, socketserver.BaseRequestHandler, workers=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # Both workers booted: they are inside get_request() (or about to be).
        wait_for(lambda: len(psutil.Process().children()) == 2, what="two workers")
    finally:
        server.shutdown()  # graceful; graceful_timeout (30 s) would pass if it were not seen
        thread.join(20)
        server.server_close()
    assert not thread.is_alive()


def test_a_server_with_fileno_gets_get_request_on_readiness() -> None:
    out_r, out_w = os.pipe()

    class Echo(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            os.write(out_w, self.request)

    server = PipeServer(None, Echo, workers=2)
    got = b""
    with serving(server):
        os.write(server.w, b"abcdefghij")
        deadline = time.monotonic() + 20
        while len(got) < 10 and time.monotonic() < deadline:
            got += os.read(out_r, 10)
    os.close(out_r)
    os.close(out_w)
    assert sorted(got) == sorted(b"abcdefghij")


# -- get_request() wrappers around sockets ------------------------------------------------------


class LoggingProxy:
    """What a get_request() override may return: the accepted socket in a logging wrapper."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        self.calls += 1
        return getattr(self._sock, name)


class Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: Any) -> None:
        pass


class Line(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(b"got " + self.rfile.readline())


class WrappingHTTP(prefork.PreforkHTTPServer):
    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        return LoggingProxy(sock), address


class WrappingTCP(prefork.PreforkTCPServer):
    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        return LoggingProxy(sock), address


def test_a_wrapping_get_request_serves_http_keep_alive() -> None:
    server = WrappingHTTP(("127.0.0.1", 0), Hello, workers=2)
    host, port = server.server_address[:2]
    with serving(server):
        for _ in range(20):
            conn = http.client.HTTPConnection(host, port, timeout=10)
            try:
                for _ in range(3):  # the connection waits between requests
                    conn.request("GET", "/")
                    response = conn.getresponse()
                    assert (response.status, response.read()) == (200, b"hello")
            finally:
                conn.close()


def test_a_wrapping_get_request_serves_clients_that_wait_before_sending() -> None:
    server = WrappingTCP(("127.0.0.1", 0), Line, workers=2)
    with serving(server):
        for round_ in range(10):
            # Several connections wait in one worker at once before their bytes arrive.
            socks = [socket.create_connection(server.server_address, timeout=10)
                     for _ in range(4)]
            try:
                time.sleep(0.02)
                for i, sock in enumerate(socks):
                    sock.sendall(b"%d.%d\n" % (round_, i))
                for i, sock in enumerate(socks):
                    assert sock.makefile("rb").readline() == b"got %d.%d\n" % (round_, i)
            finally:
                for sock in socks:
                    sock.close()
