"""How many connections the kernel holds for a listening socket outside its accept queue.

A connection whose handshake is not complete yet, or complete but deferred (``TCP_DEFER_ACCEPT``:
held until its first bytes arrive), is a request socket (``SYN_RECV``): ``accept()`` cannot see
it, and if the listener's last copy closes meanwhile, the client's next segment meets a reset.
A graceful stop counts them here (Linux sock_diag, which any user may read) so as to close the
listener only once none is left (core/handover.py).  None where the count cannot be had.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

SOCK_DIAG_BY_FAMILY = 20
NETLINK_SOCK_DIAG = 4
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCPF_SYN_RECV = 1 << 3  # the kernel adds its request sockets (TCP_NEW_SYN_RECV) to these
HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
REQUEST = struct.Struct("=BBBxI48x")  # inet_diag_req_v2: family, protocol, ext, states, id
# inet_diag_msg: family, state, timer, retrans, then the id: sport, dport (big-endian),
# src[16], dst[16], ...
MESSAGE = struct.Struct("=BBBB2s2s16s16s")


def pending(sock: socket.socket) -> int | None:
    """Connections for the TCP listener ``sock`` that are not in its accept queue (see above);
    None if it cannot be told (not Linux, not TCP, sock_diag unavailable)."""
    if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    netlink = getattr(socket, "AF_NETLINK", None)
    if netlink is None:
        return None
    try:
        host, port = sock.getsockname()[:2]
        here = _plain(ipaddress.ip_address(host))
        families = [socket.AF_INET] if sock.family == socket.AF_INET else [
            socket.AF_INET, socket.AF_INET6]
        with socket.socket(netlink, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
            return sum(_count(nl, family, here, port) for family in families)
    except OSError:
        return None


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _count(nl: socket.socket, family: int, here: Address, port: int) -> int:
    body = REQUEST.pack(family, socket.IPPROTO_TCP, 0, TCPF_SYN_RECV)
    nl.send(HEADER.pack(HEADER.size + len(body), SOCK_DIAG_BY_FAMILY,
                        NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body)
    found = 0
    while True:
        data = nl.recv(1 << 16)
        offset = 0
        while offset + HEADER.size <= len(data):
            length, kind = HEADER.unpack_from(data, offset)[:2]
            if kind == NLMSG_DONE:
                return found
            if kind == NLMSG_ERROR:
                raise OSError("sock_diag refused the dump")
            if _ours(data, offset + HEADER.size, family, here, port):
                found += 1
            offset += (length + 3) & ~3
            if length < HEADER.size:
                raise OSError("a malformed sock_diag reply")


def _ours(data: bytes, at: int, family: int, here: Address, port: int) -> bool:
    """Whether the request socket described at ``data[at:]`` is one of the listener's."""
    _, _, _, _, sport, _, src, _ = MESSAGE.unpack_from(data, at)
    if int.from_bytes(sport, "big") != port:
        return False
    if here.is_unspecified:
        return True
    local = ipaddress.ip_address(src[:4] if family == socket.AF_INET else src)
    return _plain(local) == here


def _plain(address: Address) -> Address:
    """An IPv4-mapped IPv6 address as the IPv4 one (a dual-stack listener's view of it)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
