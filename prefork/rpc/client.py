"""A small blocking RPC client over TCP (record marking) and UDP, for tests and scripts.

``call`` sends one CALL and returns the decoded :class:`~prefork.rpc.message.Reply`; the caller
decodes the results with the procedure's XDR type.  It does not retransmit.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket

import prefork.rpc.message as message

LAST_FRAGMENT = 0x80000000
_xids = itertools.count((os.getpid() << 16) & 0xFFFFFFFF)


def next_xid() -> int:
    return next(_xids) & 0xFFFFFFFF


def frame(record: bytes, fragment: int = 0) -> bytes:
    """``record`` in record marking, cut into fragments of ``fragment`` bytes (0: one)."""
    if not fragment or len(record) <= fragment:
        return (LAST_FRAGMENT | len(record)).to_bytes(4, "big") + record
    parts = [record[i:i + fragment] for i in range(0, len(record), fragment)]
    out = bytearray()
    for index, part in enumerate(parts):
        last = LAST_FRAGMENT if index == len(parts) - 1 else 0
        out += (last | len(part)).to_bytes(4, "big") + part
    return bytes(out)


def read_record(sock: socket.socket) -> bytes:
    """One record from ``sock``; EOFError if the server closed first."""
    record = bytearray()
    while True:
        word = int.from_bytes(_read_exact(sock, 4), "big")
        record += _read_exact(sock, word & ~LAST_FRAGMENT)
        if word & LAST_FRAGMENT:
            return bytes(record)


def _read_exact(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise EOFError("the server closed the connection")
        data += chunk
    return bytes(data)


class Client:
    """Calls to one program version at ``address`` over ``transport`` ("tcp" or "udp")."""

    def __init__(self, address: tuple[str, int], prog: int, vers: int, transport: str = "tcp",
                 timeout: float = 10.0, cred: message.OpaqueAuth = message.NULL_VERIFIER,
                 fragment: int = 0) -> None:
        self.address, self.prog, self.vers = address, prog, vers
        self.transport, self.cred, self.fragment = transport, cred, fragment
        if transport == "tcp":
            self.sock = socket.create_connection(address, timeout=timeout)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.settimeout(timeout)
            self.sock.connect(address)

    def send_raw(self, data: bytes) -> None:
        """``data`` as it is on UDP; as one record on TCP (framed already if ``fragment`` < 0)."""
        if self.transport == "udp":
            self.sock.send(data)
        elif self.fragment < 0:
            self.sock.sendall(data)
        else:
            self.sock.sendall(frame(data, self.fragment))

    def receive(self) -> message.Reply:
        if self.transport == "udp":
            return message.read_reply(self.sock.recv(65536))
        return message.read_reply(read_record(self.sock))

    def call(self, proc: int, args: bytes = b"", vers: int | None = None,
             xid: int | None = None) -> message.Reply:
        xid = next_xid() if xid is None else xid
        self.send_raw(message.encode_call(xid, self.prog, self.vers if vers is None else vers,
                                          proc, args, cred=self.cred))
        reply = self.receive()
        if reply.xid != xid:
            raise ValueError(f"reply to xid {reply.xid}, not {xid}")
        return reply

    def close(self) -> None:
        # shutdown first: a forked process holding a copy of the fd must not keep it open.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
