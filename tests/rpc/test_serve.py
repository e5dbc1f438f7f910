"""RPC programs served over real sockets: the pool and the stdlib's sync, threading and forking
servers, TCP (record marking) and UDP, with prefork.rpc.client as the client."""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from apps.rpc_calc import PROG, SHAPE, WHO, CalcTCP, CalcUDP

import prefork
from prefork.rpc import message as m
from prefork.rpc import xdr
from prefork.rpc.client import Client, frame, read_record

TCP_SERVERS: dict[str, Callable[..., socketserver.BaseServer]] = {
    "sync": socketserver.TCPServer,
    "threading": socketserver.ThreadingTCPServer,
    "forking": socketserver.ForkingTCPServer,
    "prefork": lambda a, h: prefork.PreforkTCPServer(a, h, workers=2),
}
UDP_SERVERS: dict[str, Callable[..., socketserver.BaseServer]] = {
    "sync": socketserver.UDPServer,
    "threading": socketserver.ThreadingUDPServer,
    "forking": socketserver.ForkingUDPServer,
    "prefork": lambda a, h: prefork.PreforkUDPServer(a, h, workers=2),
}


@contextlib.contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[Any]:
    """serve_forever() in a thread; shutdown() and server_close() on the way out."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address
    finally:
        server.shutdown()
        thread.join(30)
        server.server_close()


@contextlib.contextmanager
def tcp(mode: str) -> Iterator[tuple[str, int]]:
    with serving(TCP_SERVERS[mode](("127.0.0.1", 0), CalcTCP)) as address:
        yield address


@contextlib.contextmanager
def udp(mode: str) -> Iterator[tuple[str, int]]:
    with serving(UDP_SERVERS[mode](("127.0.0.1", 0), CalcUDP)) as address:
        yield address


def result(reply: m.Reply, kind: xdr.XdrType) -> Any:
    assert (reply.stat, reply.detail) == (m.MSG_ACCEPTED, m.SUCCESS), reply
    return xdr.decode(kind, reply.body)


def status(reply: m.Reply) -> int:
    assert reply.stat == m.MSG_ACCEPTED
    return reply.detail


def check_program(client: Client) -> None:
    """Every reply the program gives, over one connection (or socket)."""
    assert result(client.call(0), xdr.VOID) is None  # NULL
    assert result(client.call(0, vers=3), xdr.VOID) is None  # NULL in a NULL-only version
    for value in (21, -5, 2**30 - 1):
        assert result(client.call(1, xdr.encode(xdr.INT, value)), xdr.INT) == 2 * value
    assert result(client.call(1, xdr.encode(xdr.INT, 4), vers=2), xdr.INT) == 8
    assert result(client.call(5, xdr.encode(SHAPE, (2, {"w": 2.0, "h": 3.5}))),
                  xdr.DOUBLE) == 7.0
    assert result(client.call(3), WHO)["flavor"] == m.AUTH_NONE
    assert status(client.call(1)) == m.GARBAGE_ARGS  # no argument
    assert status(client.call(1, bytes(8))) == m.GARBAGE_ARGS  # trailing bytes
    assert status(client.call(5, struct.pack(">I", 3) + bytes(8))) == m.GARBAGE_ARGS
    assert status(client.call(4, xdr.encode(xdr.INT, 1))) == m.SYSTEM_ERR  # raises
    assert status(client.call(7)) == m.SYSTEM_ERR  # a result that does not encode
    assert status(client.call(42)) == m.PROC_UNAVAIL
    assert status(client.call(2, vers=2)) == m.PROC_UNAVAIL  # echo is in version 1 only
    mismatch = client.call(0, vers=9)
    assert status(mismatch) == m.PROG_MISMATCH
    assert struct.unpack(">II", mismatch.body) == (1, 3)
    client.prog += 1
    try:
        assert status(client.call(0)) == m.PROG_UNAVAIL
    finally:
        client.prog -= 1


@pytest.mark.parametrize("mode", list(TCP_SERVERS))
def test_tcp(mode: str) -> None:
    with tcp(mode) as address, Client(address, PROG, 1) as client:
        check_program(client)
        # A 200 kB opaque in 64 KiB fragments, as libtirpc sends it, and back.
        client.fragment = 65536
        blob = os.urandom(200_000)
        assert result(client.call(2, xdr.encode(xdr.Opaque(), blob)), xdr.Opaque()) == blob


@pytest.mark.parametrize("mode", list(UDP_SERVERS))
def test_udp(mode: str) -> None:
    with udp(mode) as address, Client(address, PROG, 1, "udp") as client:
        check_program(client)
        blob = os.urandom(8000)
        assert result(client.call(2, xdr.encode(xdr.Opaque(), blob)), xdr.Opaque()) == blob


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_auth_sys_reaches_the_procedure(transport: str) -> None:
    cred = m.auth_sys_credential(m.AuthSys(3, "bench-7", 1234, 56, (7, 8, 9)))
    with (tcp if transport == "tcp" else udp)("prefork") as address, \
            Client(address, PROG, 1, transport, cred=cred) as client:
        assert result(client.call(3), WHO) == {
            "flavor": 1, "uid": 1234, "gid": 56, "gids": [7, 8, 9], "machine": "bench-7"}


def test_a_record_over_the_cap_closes_only_its_connection() -> None:
    with tcp("prefork") as address:
        with Client(address, PROG, 1, fragment=-1) as client:
            client.send_raw(struct.pack(">I", 0xFFFFFFFF))  # a 2 GiB last fragment announced
            assert client.sock.recv(16) == b""  # closed without reading it
        with Client(address, PROG, 1) as client:
            assert result(client.call(1, xdr.encode(xdr.INT, 2)), xdr.INT) == 4


def test_between_records_the_connection_waits_in_the_multiplexer() -> None:
    """One worker, no threads: a handler that kept waiting for its connection's next record
    would leave the second connection unanswered."""
    server = prefork.PreforkTCPServer(("127.0.0.1", 0), CalcTCP, workers=1)
    with serving(server) as address, Client(address, PROG, 1, timeout=10) as first, \
            Client(address, PROG, 1, timeout=10) as second:
        for value in range(5):
            for client in (first, second):
                assert result(client.call(1, xdr.encode(xdr.INT, value)), xdr.INT) == 2 * value


def test_pipelined_calls_are_all_answered_in_order() -> None:
    with tcp("prefork") as address, socket.create_connection(address, timeout=10) as sock:
        calls = [m.encode_call(100 + i, PROG, 1, 1, xdr.encode(xdr.INT, i)) for i in range(20)]
        sock.sendall(b"".join(frame(c, 13) for c in calls))  # many small fragments each
        for i in range(20):
            reply = m.read_reply(read_record(sock))
            assert reply.xid == 100 + i and xdr.decode(xdr.INT, reply.body) == 2 * i


def test_unix_stream(tmp_path: Path) -> None:
    path = str(tmp_path / "rpc.sock")
    with serving(prefork.PreforkUnixStreamServer(path, CalcTCP, workers=1)), \
            socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(frame(m.encode_call(5, PROG, 1, 1, xdr.encode(xdr.INT, 8))))
        reply = m.read_reply(read_record(sock))
        assert reply.xid == 5 and xdr.decode(xdr.INT, reply.body) == 16
