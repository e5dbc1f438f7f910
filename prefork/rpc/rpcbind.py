"""Registration with rpcbind (RFC 1833): tell the host's directory where a program listens.

A client finds an RPC service by asking rpcbind (port 111) for the address of a program and
version on a transport; a server must therefore register each program, version and listener
when it starts (SET) and remove them when it stops (UNSET).  rpcbind speaks three versions
of its protocol: version 2 (the portmapper: PMAPPROC_SET/UNSET with a port and an IP protocol,
IPv4 only) and versions 3 and 4 (RPCBPROC_SET/UNSET with a netid and a universal address,
IPv6 too).  :func:`register` tries 4, then 3, then 2 -- whichever the rpcbind on this host
answers -- and returns the version it used, so :func:`unregister` undoes it the same way.

Only the loopback may SET and UNSET (rpcbind refuses other hosts unless started with ``-i``),
so the calls go to 127.0.0.1:111 over UDP, one datagram each way, retried a few times within
a short total timeout: the master makes them, and it must not hang on a missing rpcbind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

import prefork.rpc.message as message
import prefork.rpc.xdr as xdr
from prefork.rpc.client import next_xid

RPCBPROG = 100000
RPCBIND_PORT = 111
SET, UNSET = 1, 2  # the same numbers in versions 2, 3 and 4
VERSIONS = (4, 3, 2)
IPPROTO = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
TIMEOUT = 2.0  # seconds for one call, retransmissions included
RETRY = 0.25  # seconds before a retransmission

PMAP = xdr.Struct(("prog", xdr.UINT), ("vers", xdr.UINT), ("prot", xdr.UINT),
                  ("port", xdr.UINT))
RPCB = xdr.Struct(("r_prog", xdr.UINT), ("r_vers", xdr.UINT), ("r_netid", xdr.String()),
                  ("r_addr", xdr.String()), ("r_owner", xdr.String()))


class RpcbindError(OSError):
    """rpcbind did not answer, or answered something else than a boolean."""


@dataclass(frozen=True)
class Mapping:
    """One entry of rpcbind's table: a program version on one listener."""

    prog: int
    vers: int
    transport: str  # "tcp" or "udp"
    host: str  # the listener's address ("0.0.0.0", "::", "127.0.0.1", ...)
    port: int

    @property
    def ipv6(self) -> bool:
        return ipaddress.ip_address(self.host.partition("%")[0]).version == 6

    def netid(self) -> str:
        return self.transport + ("6" if self.ipv6 else "")

    def universal_address(self) -> str:
        """RFC 5665's form: the host in its usual text, then the port's two bytes."""
        host = self.host.partition("%")[0]
        return f"{host}.{self.port >> 8}.{self.port & 0xFF}"


def mappings(prog: int, versions: Sequence[int], listeners: Sequence[tuple[str, str, int]],
             ) -> list[Mapping]:
    """Every (version, listener) of ``prog``; ``listeners`` are (transport, host, port)."""
    return [Mapping(prog, vers, transport, host, port)
            for vers in versions for transport, host, port in listeners]


def _args(version: int, entry: Mapping, proc: int, owner: str) -> bytes:
    if version == 2:
        port = entry.port if proc == SET else 0
        return xdr.encode(PMAP, {"prog": entry.prog, "vers": entry.vers,
                                 "prot": IPPROTO[entry.transport], "port": port})
    addr = entry.universal_address() if proc == SET else ""
    return xdr.encode(RPCB, {"r_prog": entry.prog, "r_vers": entry.vers,
                             "r_netid": entry.netid(), "r_addr": addr, "r_owner": owner})


class Rpcbind:
    """Calls to the rpcbind at ``address`` (127.0.0.1:111 by default)."""

    def __init__(self, address: tuple[str, int] = ("127.0.0.1", RPCBIND_PORT),
                 timeout: float = TIMEOUT) -> None:
        self.address, self.timeout = address, timeout

    def call(self, version: int, proc: int, args: bytes) -> message.Reply:
        """One call over UDP, retransmitted every RETRY seconds until ``timeout``."""
        xid = next_xid()
        data = message.encode_call(xid, RPCBPROG, version, proc, args)
        deadline = time.monotonic() + self.timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(self.address)
            while (left := deadline - time.monotonic()) > 0:
                with contextlib.suppress(ConnectionRefusedError):
                    sock.send(data)  # refused: the ICMP of an earlier try; try again
                sock.settimeout(min(RETRY, left))
                try:
                    while True:
                        reply = message.read_reply(sock.recv(65536))
                        if reply.xid == xid:
                            return reply
                except (TimeoutError, xdr.XdrError):
                    continue
                except ConnectionRefusedError:
                    raise RpcbindError(f"no rpcbind at {self.address[0]}:{self.address[1]}"
                                       ) from None
        raise RpcbindError(f"no answer from rpcbind at {self.address[0]}:{self.address[1]}")

    def change(self, version: int, proc: int, entry: Mapping, owner: str = "") -> bool | None:
        """SET or UNSET ``entry`` with protocol ``version``: rpcbind's boolean, or None when
        it does not speak that version (or that version cannot say it: IPv6 in version 2)."""
        if version == 2 and entry.ipv6:
            return None
        reply = self.call(version, proc, _args(version, entry, proc, owner))
        if reply.stat != message.MSG_ACCEPTED:
            raise RpcbindError(f"rpcbind refused the call (reject status {reply.detail})")
        if reply.detail in (message.PROG_MISMATCH, message.PROG_UNAVAIL,
                            message.PROC_UNAVAIL):
            return None
        if reply.detail != message.SUCCESS:
            raise RpcbindError(f"rpcbind answered status {reply.detail}")
        try:
            return bool(xdr.decode(xdr.BOOL, reply.body))
        except xdr.XdrError:
            raise RpcbindError("rpcbind's reply is not a boolean") from None

    def register(self, entry: Mapping, owner: str = "",
                 versions: Sequence[int] = VERSIONS) -> tuple[int, bool]:
        """SET with the first of ``versions`` rpcbind speaks: (that version, its answer).
        False means rpcbind already maps the program version elsewhere."""
        for version in versions:
            done = self.change(version, SET, entry, owner)
            if done is not None:
                return version, done
        raise RpcbindError(f"rpcbind speaks none of versions {list(versions)}")

    def unregister(self, version: int, entry: Mapping, owner: str = "") -> bool:
        return bool(self.change(version, UNSET, entry, owner))
