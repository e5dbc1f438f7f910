"""Whose proxy headers to believe: ``forwarded_allow_ips`` and what a trusted peer may say.

Behind a proxy on the same host (nginx terminating TLS, say) the WSGI application sees the
proxy as its peer and plain HTTP as its scheme; the proxy tells the truth in headers, which
anyone else could send too.  So the headers count only from the peers listed in
``forwarded_allow_ips`` (addresses or networks, comma-separated, ``*`` for every peer; by
default ``127.0.0.1,::1``, as gunicorn; a unix-socket peer is on this host and counts as
trusted when ``127.0.0.1`` is).  From a trusted peer:

* ``X-Forwarded-Proto: https`` (or ``http``) sets ``wsgi.url_scheme``;
* ``X-Forwarded-For`` sets ``REMOTE_ADDR``: its addresses are read from the right (the one the
  trusted proxy appended) and the first that is not itself trusted is the client; what lies to
  its left came from the client and is not believed.

A header from any other peer changes nothing (it stays in the environ as ``HTTP_X_...``).
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

DEFAULT = "127.0.0.1,::1"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Trusted:
    """The parsed ``forwarded_allow_ips``."""

    def __init__(self, spec: str) -> None:
        self.everyone = False
        self.networks: list[Network] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            if item == "*":
                self.everyone = True
            else:
                self.networks.append(ipaddress.ip_network(item, strict=False))  # ValueError
        self.local = self.everyone or self.trusts("127.0.0.1")

    def trusts(self, address: str) -> bool:
        if self.everyone:
            return True
        try:
            ip = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def peer(self, client_address: Any) -> bool:
        """Whether the connection's peer (socketserver's ``client_address``) is trusted."""
        if isinstance(client_address, tuple) and client_address:
            return self.trusts(str(client_address[0]))
        return self.local  # a unix socket: the peer is on this host


@functools.lru_cache(maxsize=8)
def trusted(spec: str) -> Trusted:
    return Trusted(spec)


def check(spec: str) -> str:
    """``spec`` if it parses (for the setting's converter); ValueError says why not."""
    Trusted(spec)
    return spec


def apply(environ: dict[str, Any], trust: Trusted) -> None:
    """What a trusted peer's headers say, into ``environ`` (see the module docstring)."""
    proto = environ.get("HTTP_X_FORWARDED_PROTO")
    if proto is not None:
        scheme = proto.rsplit(",", 1)[-1].strip().lower()
        if scheme in ("http", "https"):
            environ["wsgi.url_scheme"] = scheme
    chain = environ.get("HTTP_X_FORWARDED_FOR")
    if chain is not None:
        hops = [hop.strip() for hop in chain.split(",") if hop.strip()]
        client = None
        for hop in reversed(hops):
            client = hop
            if not trust.trusts(hop):
                break
        if client is not None and _is_ip(client):
            environ["REMOTE_ADDR"] = client.strip("[]")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True
