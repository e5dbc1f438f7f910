"""The PROXY protocol (HAProxy's spec, versions 1 and 2): a load balancer that forwards TCP
says, in a header before the connection's own bytes, who its client was.

Why here.  The header comes before everything else, TLS included, so it is read where a
connection begins: in a prefork worker by the multiplexer (``mux.py``), without blocking and
under the connection's ``client_timeout`` deadline, like a TLS handshake; in the stdlib's
modes by :class:`ProxyProtocolMixIn` in ``finish_request`` (the handler's thread, child or
loop), with the same deadline.  Either way the handler's ``client_address`` is the header's
source address, so a WSGI app's ``REMOTE_ADDR``, an ``http.server`` handler's log and
``forwarded_allow_ips`` all see the real client.

Whom to believe.  A header is accepted only from a peer in ``proxy_allow_ips`` (by default
loopback, as gunicorn's ``--proxy-allow-from``).  A connection from any other peer, a header
that is malformed, longer than its bound (107 bytes for v1, :data:`MAX_V2` for v2) or not
complete within the deadline, is closed unserved and logged: a listener with the PROXY
protocol on speaks it on every connection, so a connection without it is a misconfiguration
or an attempt to pass as a proxy.

What counts.  v1: ``PROXY TCP4|TCP6 SRC DST SPORT DPORT\\r\\n`` (addresses and ports checked),
or ``PROXY UNKNOWN ...\\r\\n`` (the peer stays the client).  v2: the 12-byte signature, version
2, command LOCAL (a health check: the peer stays the client) or PROXY, over TCP (INET or
INET6; UNSPEC and UNIX keep the peer; a datagram family is refused), the TLVs skipped.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import socketserver
import struct
import time
from dataclasses import dataclass
from typing import Any

from prefork.core import waits
from prefork.core.trust import LOCAL, Trusted, trusted

log = logging.getLogger("prefork.worker")

V1_PREFIX = b"PROXY "
V1_MAX = 107  # the spec's bound, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16  # signature, version and command, family, length
MAX_V2 = 4096  # bytes of a v2 header, TLVs included (the spec allows 64 KiB; none needs it)
MAX_HEADER = max(V1_MAX, MAX_V2)
_V2_ADDRESSES = {0x11: (12, "!4s4sHH"), 0x21: (36, "!16s16sHH")}  # TCP over IPv4, over IPv6


class ProxyError(ValueError):
    """The bytes are not a valid PROXY header (the message says why)."""


@dataclass(frozen=True)
class Header:
    """A complete header: ``length`` bytes long; ``source`` the client's address as a socket
    address (``(host, port)`` for IPv4, ``(host, port, 0, 0)`` for IPv6), or None where the
    header names none (v1 UNKNOWN, v2 LOCAL or UNSPEC): the peer stays the client."""

    length: int
    source: tuple[Any, ...] | None


def parse(data: bytes | bytearray | memoryview) -> Header | None:
    """The header at the start of ``data``; None if ``data`` may still become one (more bytes
    needed); :class:`ProxyError` if it cannot."""
    data = bytes(data[:MAX_HEADER])
    if data[:1] == b"P":
        return _v1(data)
    if data[:1] == b"\r":
        return _v2(data)
    if data:
        raise ProxyError("no PROXY header")
    return None


def _v1(data: bytes) -> Header | None:
    if not data.startswith(V1_PREFIX[:len(data)]):
        raise ProxyError("no PROXY header")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyError("a v1 header longer than 107 bytes")
        return None
    line = data[:end]
    try:
        words = line.decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise ProxyError("a v1 header that is not ASCII") from None
    if len(words) >= 2 and words[1] == "UNKNOWN":
        return Header(end + 2, None)
    if len(words) != 6 or words[1] not in ("TCP4", "TCP6"):
        raise ProxyError(f"a malformed v1 header {line[:60]!r}")
    _, family, src, dst, sport, dport = words
    version = 4 if family == "TCP4" else 6
    for text in (src, dst):
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise ProxyError(f"a v1 header with a bad address {text!r}") from None
        if ip.version != version:
            raise ProxyError(f"a v1 {family} header with address {text!r}")
    for text in (sport, dport):
        if not text.isdigit() or not text.isascii() or (text[0] == "0" and text != "0") \
                or int(text) > 65535:
            raise ProxyError(f"a v1 header with a bad port {text!r}")
    return Header(end + 2, _address(src, int(sport), version))


def _v2(data: bytes) -> Header | None:
    if not V2_SIGNATURE.startswith(data[:len(V2_SIGNATURE)]):
        raise ProxyError("no PROXY header")
    if len(data) < V2_FIXED:
        return None
    version_command, family, length = data[12], data[13], int.from_bytes(data[14:16], "big")
    if version_command >> 4 != 2 or version_command & 0x0F > 1:
        raise ProxyError(f"a v2 header with version/command byte {version_command:#04x}")
    if V2_FIXED + length > MAX_V2:
        raise ProxyError(f"a v2 header of {V2_FIXED + length} bytes (at most {MAX_V2})")
    if len(data) < V2_FIXED + length:
        return None
    total = V2_FIXED + length
    if version_command & 0x0F == 0:  # LOCAL: the proxy's own connection (a health check)
        return Header(total, None)
    if family & 0x0F == 2:  # DGRAM
        raise ProxyError("a v2 header for a datagram connection")
    shape = _V2_ADDRESSES.get(family)
    if shape is None:
        if family >> 4 in (0, 3):  # UNSPEC, UNIX: nothing to say about an IP client
            return Header(total, None)
        raise ProxyError(f"a v2 header with address family byte {family:#04x}")
    size, layout = shape
    if length < size:
        raise ProxyError(f"a v2 header of {length} address bytes (needs {size})")
    src, _dst, sport, _dport = struct.unpack(layout, data[V2_FIXED:V2_FIXED + size])
    version = 4 if size == 12 else 6
    text = str(ipaddress.IPv4Address(src) if version == 4 else ipaddress.IPv6Address(src))
    return Header(total, _address(text, sport, version))  # (the TLVs after it: skipped)


def _address(host: str, port: int, version: int) -> tuple[Any, ...]:
    return (host, port) if version == 4 else (host, port, 0, 0)


def reads_header(server: Any) -> bool:
    """Whether each connection to ``server`` -- a server, or the command's config -- begins
    with a PROXY header: its ``proxy_protocol`` (False for a server without one).  The one
    place that reads the setting: the worker's listeners (:func:`proxied`) and the command
    (its start rule, the stdlib modes' server class) ask here."""
    return bool(getattr(server, "proxy_protocol", False))


def proxied(servers: dict[int, socketserver.BaseServer]) -> dict[int, Trusted]:
    """The listeners (by fd) whose connections begin with a PROXY header (:func:`reads_header`),
    each with the peers it takes one from (``proxy_allow_ips``)."""
    return {fd: trusted(getattr(server, "proxy_allow_ips", LOCAL))
            for fd, server in servers.items() if reads_header(server)}


def refused(peer: Any, why: str) -> None:
    """The one log line for a connection closed over its PROXY header."""
    log.warning("worker (pid %d) closed a connection from %s: %s", os.getpid(),
                peer[0] if isinstance(peer, tuple) and peer else peer, why)


_recv = socket.socket.recv  # past any TLS layer: the header comes before the handshake
_recv_into = socket.socket.recv_into


def take(sock: Any, buf: bytearray) -> Header | None:
    """Without blocking: peek at ``sock`` (``buf`` holds MAX_HEADER bytes); on a complete
    header, consume exactly its bytes and return it; None: wait for more.  Raises
    :class:`ProxyError`, or ConnectionError when the peer closed before a header was whole."""
    try:
        size = _recv_into(sock, buf, MAX_HEADER, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None
    if size == 0:
        raise ConnectionError("closed before a whole PROXY header")
    header = parse(memoryview(buf)[:size])
    if header is not None:
        _consume(sock, header.length)
    return header


def _consume(sock: Any, count: int) -> None:
    while count > 0:  # peeked: the bytes are there
        chunk = _recv(sock, count)
        if not chunk:
            raise ConnectionError("closed inside a PROXY header")
        count -= len(chunk)


def read(sock: Any, timeout: float) -> Header:
    """Blocking, within ``timeout`` seconds: read the header and no byte more (for the stdlib's
    modes).  Bytes peeked and found to be no header's end yet are consumed, so the next peek
    waits for new ones instead of spinning.  Raises ProxyError, or OSError (TimeoutError)."""
    deadline = time.monotonic() + timeout
    got = bytearray()
    saved = sock.gettimeout()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no whole PROXY header in time")
            sock.settimeout(left)
            peeked = sock_peek(sock, MAX_HEADER - len(got))
            if not peeked:
                raise ConnectionError("closed before a whole PROXY header")
            header = parse(got + peeked)
            if header is not None:
                _consume(sock, header.length - len(got))
                return header
            _consume(sock, len(peeked))
            got += peeked
    finally:
        sock.settimeout(saved)


def sock_peek(sock: Any, size: int) -> bytes:
    return bytes(_recv(sock, size, socket.MSG_PEEK))


class ProxyProtocolMixIn:
    """Server mix-in (before the socketserver class) for the stdlib's modes: each connection
    starts with a PROXY header, read in ``finish_request`` (in the handler's thread or child)
    within ``client_timeout`` seconds, from peers in ``proxy_allow_ips`` only; the handler's
    ``client_address`` is the header's source.  (A prefork worker reads it in its multiplexer
    instead: PreforkMixIn's ``proxy_protocol`` attribute.)"""

    proxy_allow_ips: str = LOCAL

    def finish_request(self, request: Any, client_address: Any) -> None:
        if not trusted(self.proxy_allow_ips).peer(client_address):
            refused(client_address, "a PROXY header from a peer not in proxy_allow_ips")
            return
        try:
            header = read(request, waits.head_wait(self))
        except (ProxyError, OSError) as exc:
            refused(client_address, f"PROXY protocol: {exc}")
            return
        address = header.source if header.source is not None else client_address
        super().finish_request(request, address)  # type: ignore[misc]
