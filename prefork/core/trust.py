"""Whose word to take about a connection: a list of trusted peers (addresses or networks,
comma-separated, ``*`` for every peer), as ``forwarded_allow_ips`` and ``proxy_allow_ips`` are
written.  A unix-socket peer is on this host: it counts as trusted when ``127.0.0.1`` is."""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

LOCAL = "127.0.0.1,::1"  # the default of both lists, as gunicorn's
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PEERS = 4096  # peers' addresses remembered per list, then it starts again


class Trusted:
    """A parsed list of trusted peers.  Methods: trusts(address), peer(client_address)."""

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
        self.peers: dict[str, bool] = {}  # peer address -> trusted (asked per connection)
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
        if isinstance(client_address, tuple) and client_address and client_address[0] != "unix":
            address = str(client_address[0])
            known = self.peers.get(address)
            if known is None:  # (kept for the peers, not for what their headers say)
                if len(self.peers) >= PEERS:
                    self.peers.clear()
                known = self.peers[address] = self.trusts(address)
            return known
        return self.local  # a unix socket: the peer is on this host


@functools.lru_cache(maxsize=8)
def forwarders(server: Any) -> str:
    """The peers whose proxy headers (X-Forwarded-For, Forwarded) ``server`` takes, as
    written: its ``forwarded_allow_ips``, LOCAL when it has none (a stdlib server the runner
    did not set).  The one place that reads the setting: the WSGI handler and the keep-alive
    handler ask here."""
    return str(getattr(server, "forwarded_allow_ips", LOCAL))


@functools.lru_cache(maxsize=32)
def trusted(spec: str) -> Trusted:
    """``spec`` parsed (ValueError if it is not a list of addresses and networks), once: the
    handlers ask on every connection."""
    return Trusted(spec)


def check(spec: str) -> str:
    """``spec`` if it parses (for the settings' converter); ValueError says why not."""
    Trusted(spec)
    return spec
