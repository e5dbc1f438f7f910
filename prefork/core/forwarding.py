"""What a trusted proxy's headers say about the client: ``X-Forwarded-For``,
``X-Forwarded-Proto`` and ``Forwarded`` (RFC 7239), read by the rule that
``prefork/apps/forwarded.py`` explains (for WSGI).  :func:`client` applies it to an
``http.server`` handler's ``client_address`` (``KeepAliveHTTPMixIn.parse_request``)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from prefork.core.trust import Trusted, trusted

# One forwarded-pair (RFC 7239 section 4): token "=" ( token / quoted-string ).
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PAIR = re.compile(rf'\s*({_TOKEN})=({_TOKEN}|"(?:[^"\\]|\\.)*")\s*')


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """The elements of a ``Forwarded`` value, each its pairs (names lower-cased, quotes and
    escapes removed); an element that does not parse is an empty dict (it stops a walk)."""
    elements: list[dict[str, str]] = []
    for element in _split(value, ","):
        pairs: dict[str, str] = {}
        for pair in _split(element, ";"):
            if not pair.strip():
                continue
            match = _PAIR.fullmatch(pair)
            if match is None:
                pairs = {}
                break
            raw = match.group(2)
            if raw.startswith('"'):
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            pairs[match.group(1).lower()] = raw
        elements.append(pairs)
    return elements


def _split(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside quoted strings."""
    parts, start, quoted, escaped = [], 0, False, False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == sep and not quoted:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


def _node_ip(node: str) -> str | None:
    """The address of a ``for=`` node (``1.2.3.4``, ``1.2.3.4:80``, ``[v6]``, ``[v6]:80``),
    or None (``unknown``, an obfuscated ``_name``, anything else)."""
    if node.startswith("["):
        host = node[1:node.find("]")] if "]" in node else ""
    else:
        host = node.rsplit(":", 1)[0] if node.count(":") == 1 else node
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _from_forwarded(value: str, trust: Trusted) -> tuple[str | None, str | None]:
    """(client address or None, scheme or None) from a trusted peer's ``Forwarded``."""
    chosen: dict[str, str] = {}
    for element in reversed(parse_forwarded(value)):
        chosen = element
        ip = _node_ip(element.get("for", ""))
        if ip is None or not trust.trusts(ip):
            break
    ip = _node_ip(chosen.get("for", ""))
    proto = chosen.get("proto", "").lower()
    return ip, proto if proto in ("http", "https") else None


def _from_x_forwarded_for(chain: str, trust: Trusted) -> str | None:
    hops = [hop.strip() for hop in chain.split(",") if hop.strip()]
    found = None
    for hop in reversed(hops):
        found = hop
        if not trust.trusts(hop):
            break
    return _node_ip(found) if found is not None else None


def resolve(headers: Mapping[str, Any], trust: Trusted) -> tuple[str | None, str | None]:
    """(client address, scheme) a trusted peer's headers say, each None where they say
    nothing; ``headers`` in the environ's spelling (``HTTP_X_FORWARDED_FOR``)."""
    address = scheme = None
    proto = headers.get("HTTP_X_FORWARDED_PROTO")
    if proto is not None:
        value = proto.rsplit(",", 1)[-1].strip().lower()
        scheme = value if value in ("http", "https") else None
    chain = headers.get("HTTP_X_FORWARDED_FOR")
    if chain is not None:
        address = _from_x_forwarded_for(chain, trust)
    standard = headers.get("HTTP_FORWARDED")
    if standard is not None and (chain is None or proto is None):
        ip, said = _from_forwarded(standard, trust)
        if chain is None:
            address = ip
        if proto is None:
            scheme = said
    return address, scheme


def client(headers: Any, address: Any, spec: str) -> Any:
    """An ``http.server`` handler's ``client_address`` for one request: ``address`` (the
    connection's peer), its host replaced by the client a peer in ``spec``
    (``forwarded_allow_ips``) names in ``headers`` (an ``email.message.Message``); the port
    stays the connection's, as ``REMOTE_PORT`` does for WSGI."""
    trust = trusted(spec)
    if headers is None or not trust.peer(address):
        return address
    names = {"X-Forwarded-For": "HTTP_X_FORWARDED_FOR", "Forwarded": "HTTP_FORWARDED"}
    values = {key: ", ".join(headers.get_all(name)) for name, key in names.items()
              if headers.get_all(name)}
    if not values:
        return address
    found, _ = resolve(values, trust)
    if found is None:
        return address
    if isinstance(address, tuple) and len(address) >= 2 and address[0] != "unix":
        return (found, *address[1:])
    return (found, 0)
