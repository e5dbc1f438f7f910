"""Malformed messages against a two-worker pool, over TCP and UDP: truncated calls, oversized
lengths, bad unions, non-zero padding, replies sent as calls, noise, fragment headers over the
record cap.  Each is answered GARBAGE_ARGS or dropped as RFC 5531 says, and every worker goes on
serving (the same pids answer afterwards)."""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
from collections.abc import Iterator

import psutil
import pytest
from apps.rpc_calc import PROG, SHAPE, CalcTCP, CalcUDP

import prefork
from helpers import wait_for
from prefork.rpc import message as m
from prefork.rpc import xdr
from prefork.rpc.client import Client, frame, read_record

COUNT = 1000  # malformed messages per transport
HEADER = 40  # bytes of a call header with AUTH_NONE credential and verifier
DROP, GARBAGE, CLOSE = "dropped", "GARBAGE_ARGS", "connection closed"


def malformed(rng: random.Random, xid: int, tcp: bool) -> tuple[bytes, str]:
    """One malformed message (a record's payload; for CLOSE, the raw bytes) and its fate."""
    kind = rng.randrange(8 if tcp else 7)
    if kind == 0:  # a call cut short
        call = m.encode_call(xid, PROG, 1, 5, xdr.encode(SHAPE, (2, {"w": 1.0, "h": 2.0})))
        cut = rng.randrange(len(call))
        return call[:cut], DROP if cut < HEADER else GARBAGE
    if kind == 1:  # an opaque length far beyond the data
        length = rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 1 << 20, 9])
        return m.encode_call(xid, PROG, 1, 2, struct.pack(">I", length) + b"abcd"), GARBAGE
    if kind == 2:  # a credential length beyond the 400 bytes allowed, or beyond the data
        call = bytearray(m.encode_call(xid, PROG, 1, 0))
        call[28:32] = struct.pack(">I", rng.choice([401, 0xFFFFFFFF, 64]))
        return bytes(call), DROP
    if kind == 3:  # a union discriminant with no arm
        case = rng.choice([0, 3, 0x7FFFFFFF, -1])
        return m.encode_call(xid, PROG, 1, 5, struct.pack(">i", case) + bytes(16)), GARBAGE
    if kind == 4:  # non-zero padding in an opaque
        return m.encode_call(xid, PROG, 1, 2, b"\0\0\0\1a\0\0" + bytes([rng.randrange(1, 256)])
                             ), GARBAGE
    if kind == 5:  # a REPLY (or another message type) sent to the server
        call = bytearray(m.encode_call(xid, PROG, 1, 0))
        call[4:8] = struct.pack(">I", rng.choice([1, 2, 0xFFFFFFFF]))
        return bytes(call), DROP
    if kind == 6:  # noise that is not a call (its type word is not 0)
        noise = bytearray(rng.randbytes(rng.randrange(0, 200)))
        if len(noise) >= 8:
            noise[4:8] = struct.pack(">I", rng.randrange(1, 1 << 32))
        return bytes(noise), DROP
    # TCP: a fragment header announcing more than the record cap (up to 2 GiB - 1)
    size = rng.randrange(CalcTCP.max_record + 1, 1 << 31)
    return struct.pack(">I", rng.choice([0x80000000, 0]) | size), CLOSE


def workers() -> set[int]:
    return {c.pid for c in psutil.Process().children() if c.status() != psutil.STATUS_ZOMBIE}


@contextlib.contextmanager
def serve(server: prefork.PreforkTCPServer | prefork.PreforkUDPServer) -> Iterator[set[int]]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield wait_for(lambda: (w := workers()) and len(w) == 2 and w, what="two workers")
    finally:
        server.shutdown()
        thread.join(30)
        server.server_close()


def answered_by_both(address: tuple[str, int], transport: str) -> set[int]:
    """Pids answering procedure 6 over fresh sockets, until both workers answered."""
    seen: set[int] = set()

    def both() -> bool:
        with Client(address, PROG, 1, transport, timeout=5) as client:
            seen.add(xdr.decode(xdr.INT, client.call(6).body))
        return len(seen) == 2

    wait_for(both, timeout=30, interval=0, what="both workers answering")
    return seen


def test_malformed_over_tcp() -> None:
    rng = random.Random(22)
    server = prefork.PreforkTCPServer(("127.0.0.1", 0), CalcTCP, workers=2)
    with serve(server) as pool:
        address = server.server_address
        fates: dict[str, int] = {}
        sock = socket.create_connection(address, timeout=10)
        try:
            for i in range(COUNT):
                data, fate = malformed(rng, 1_000_000 + i, tcp=True)
                fates[fate] = fates.get(fate, 0) + 1
                if fate == CLOSE:
                    sock.sendall(data)
                    assert sock.recv(16) == b"", "a record over the cap must close"
                    sock.close()
                    sock = socket.create_connection(address, timeout=10)
                    continue
                sock.sendall(frame(data) + frame(m.encode_call(2_000_000 + i, PROG, 1, 0)))
                reply = m.read_reply(read_record(sock))
                if fate == GARBAGE:
                    assert (reply.xid, reply.stat, reply.detail) == (
                        1_000_000 + i, m.MSG_ACCEPTED, m.GARBAGE_ARGS), (i, data)
                    reply = m.read_reply(read_record(sock))
                assert (reply.xid, reply.detail) == (2_000_000 + i, m.SUCCESS), (i, data, fate)
        finally:
            sock.close()
        assert set(fates) == {DROP, GARBAGE, CLOSE}
        assert answered_by_both(address, "tcp") == pool == workers()


def until(sock: socket.socket, got: dict[int, m.Reply], xid: int) -> None:
    """Receive replies into ``got`` until the one to ``xid`` is there."""
    while xid not in got:
        reply = m.read_reply(sock.recv(65536))
        assert reply.xid not in got, f"two replies to {reply.xid}"
        got[reply.xid] = reply


def test_malformed_over_udp() -> None:
    rng = random.Random(4506)
    server = prefork.PreforkUDPServer(("127.0.0.1", 0), CalcUDP, workers=2)
    with serve(server) as pool:
        address = server.server_address
        expected: dict[int, str] = {}
        got: dict[int, m.Reply] = {}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(10)
            sock.connect(address)

            for i in range(COUNT):
                xid = 1_000_000 + i
                data, expected[xid] = malformed(rng, xid, tcp=False)
                sock.send(data)
                sock.send(m.encode_call(2_000_000 + i, PROG, 1, 0))
                until(sock, got, 2_000_000 + i)  # the NULL sent after it: a worker is serving
                if expected[xid] == GARBAGE:  # may come after the NULL's: another worker
                    until(sock, got, xid)
            sock.send(m.encode_call(3_000_000, PROG, 1, 0))
            until(sock, got, 3_000_000)  # a late reply to a dropped message would be in by now
        for xid, fate in expected.items():
            if fate == GARBAGE:
                assert (got[xid].stat, got[xid].detail) == (m.MSG_ACCEPTED, m.GARBAGE_ARGS)
            else:
                assert xid not in got, f"a reply to a message that must be dropped: {xid}"
        assert set(expected.values()) == {DROP, GARBAGE}
        assert answered_by_both(address, "udp") == pool == workers()


pytestmark = pytest.mark.timeout(120)
