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
  its left came from the client and is not believed;
* ``Forwarded`` (RFC 7239), where the ``X-Forwarded-`` header for the same thing is absent:
  its elements are read from the right by the same rule (the element a trusted proxy appended
  names its own peer in ``for=``), and the element found gives both the client (``for=``: an
  address, ``"[v6]"`` or with a port; an obfuscated ``_name`` or ``unknown`` stops the walk
  and leaves ``REMOTE_ADDR`` as it is) and the scheme (its ``proto=``).

A proxy should therefore send one family of headers and drop the other from its clients.
A header from any other peer changes nothing (it stays in the environ as ``HTTP_...``).
``prefork.core.forwarding`` reads the headers; it sets an ``http.server`` handler's
``client_address`` by the same rule.
"""

from __future__ import annotations

from typing import Any

from prefork.core.forwarding import resolve
from prefork.core.trust import LOCAL, Trusted, check, trusted

__all__ = ["DEFAULT", "Trusted", "apply", "check", "trusted"]

DEFAULT = LOCAL

def apply(environ: dict[str, Any], trust: Trusted) -> None:
    """What a trusted peer's headers say, into ``environ`` (see the module docstring)."""
    if ("HTTP_X_FORWARDED_FOR" not in environ and "HTTP_X_FORWARDED_PROTO" not in environ
            and "HTTP_FORWARDED" not in environ):
        return
    address, scheme = resolve(environ, trust)
    if scheme is not None:
        environ["wsgi.url_scheme"] = scheme
    if address is not None:
        environ["REMOTE_ADDR"] = address
