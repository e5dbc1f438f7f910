"""The UDP duplicate request cache: a retransmitted call runs once across the pool's workers."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import psutil
import pytest
from apps.rpc_calc import PROG

import prefork
from helpers import in_child, wait_for
from prefork.rpc import Context, Program, RPCDatagramHandler, procedure, xdr
from prefork.rpc import message as m
from prefork.rpc.drc import DROP, RUN, DuplicateCache


class Counter(Program):
    """Procedure 1 counts its runs in a file, then waits for the test's go-ahead."""

    number = PROG + 1
    folder: ClassVar[Path] = Path()

    @procedure(1, args=xdr.INT, result=xdr.INT)
    def count(self, ctx: Context, value: int) -> int:
        with open(self.folder / "runs", "ab") as runs:
            runs.write(b"x")
        deadline = time.monotonic() + 20
        while not (self.folder / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return os.getpid()


class Cached(RPCDatagramHandler):
    programs = (Counter,)
    cache = DuplicateCache(64)  # at import: before the pool forks


class Uncached(RPCDatagramHandler):
    programs = (Counter,)


def runs() -> int:
    path = Counter.folder / "runs"
    return path.stat().st_size if path.exists() else 0


@contextlib.contextmanager
def pool(handler: type[RPCDatagramHandler]) -> Iterator[tuple[str, int]]:
    server = prefork.PreforkUDPServer(("127.0.0.1", 0), handler, workers=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len([c for c in psutil.Process().children()
                              if c.status() != psutil.STATUS_ZOMBIE]) == 2, what="two workers")
        yield server.server_address
    finally:
        (Counter.folder / "go").touch()
        server.shutdown()
        thread.join(30)
        server.server_close()


@pytest.mark.parametrize("handler", [Cached, Uncached])
def test_a_retransmission_runs_once_across_workers(
        tmp_path: Path, handler: type[RPCDatagramHandler]) -> None:
    Counter.folder = tmp_path
    call = m.encode_call(77, Counter.number, 1, 1, xdr.encode(xdr.INT, 5))
    with pool(handler) as address, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.connect(address)
        sock.send(call)
        wait_for(lambda: runs() == 1, what="the first run started")
        for _ in range(3):  # the first worker is busy: the other one reads these
            sock.send(call)
        if handler is Uncached:  # the control: without the cache the other worker runs it
            wait_for(lambda: runs() == 2, what="the retransmission run again")
            return
        sock.send(m.encode_call(78, Counter.number, 1, 0))  # NULL, read after them
        assert m.read_reply(sock.recv(65536)).xid == 78  # so the retransmissions were seen
        assert runs() == 1
        (tmp_path / "go").touch()
        first = sock.recv(65536)
        reply = m.read_reply(first)
        assert reply.xid == 77 and reply.detail == m.SUCCESS
        runner = xdr.decode(xdr.INT, reply.body)
        sock.send(call)  # after it ran: the stored reply, the same bytes
        assert sock.recv(65536) == first
        assert runs() == 1
        sock.send(m.encode_call(79, Counter.number, 1, 1, xdr.encode(xdr.INT, 5)))  # a new xid
        assert m.read_reply(sock.recv(65536)).xid == 79
        assert runs() == 2
        assert runner in {c.pid for c in psutil.Process().children()}


def test_the_cache_is_shared_across_fork() -> None:
    cache = DuplicateCache(8, max_reply=16)
    key = cache.key(("127.0.0.1", 9), b"call")
    assert cache.begin(key) == RUN
    assert in_child(lambda: str(cache.begin(key))) == DROP  # running in the parent
    cache.finish(key, b"reply")
    assert in_child(lambda: str(cache.begin(key))) == str(b"reply")  # stored by the parent
    assert cache.begin(key) == b"reply"
    other = cache.key(("127.0.0.1", 10), b"call")  # another client: another call
    assert other != key
    too_long = cache.key(("127.0.0.1", 9), b"big")
    assert cache.begin(too_long) == RUN
    cache.finish(too_long, bytes(17))  # not kept: a retransmission runs again
    assert cache.begin(too_long) == RUN
