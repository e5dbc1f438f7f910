"""The multiplexer's waits and bound, read from a server's settings in this one place:
``client_timeout`` (a new connection's PROXY header, TLS handshake and head; a kept-alive
request's head from its first byte), ``keep_alive`` (an idle kept-alive connection),
``send_timeout`` (the rest of a response the handler left) and ``worker_connections`` (how
many connections wait per worker; 0 sizes it from the fd limit); and the drain's grace for an
idle connection of a retiring worker.  A stdlib server that the runner did not set has the
contract's defaults."""

from __future__ import annotations

from typing import Any

from prefork.core import fdlimit
from prefork.core.contract import PoolServer

_DEFAULTS = PoolServer  # (the contract's class attributes hold the defaults)


def head_wait(server: Any) -> float:
    """Seconds a connection may take for its PROXY header, handshake and request head."""
    return float(getattr(server, "client_timeout", _DEFAULTS.client_timeout))


def idle_wait(server: Any) -> float:
    """Seconds an idle kept-alive connection waits for its next request."""
    return float(getattr(server, "keep_alive", _DEFAULTS.keep_alive))


def send_wait(server: Any) -> float:
    """Seconds the rest of a response may take to be sent, in all."""
    return float(getattr(server, "send_timeout", _DEFAULTS.send_timeout))


def most_waiting(server: Any) -> int:
    """Connections that may wait in one worker's multiplexer."""
    return fdlimit.connections_bound(int(getattr(server, "worker_connections",
                                                 _DEFAULTS.worker_connections)))


# How long a retiring worker keeps an idle kept-alive connection for the request its client may
# already have sent (core/mux.py, drain): a round trip and a client's turn, with ample slack.
DRAIN_GRACE = 1.0


def drain_grace(idle: float, kill_after: float) -> float:
    """DRAIN_GRACE, within keep_alive and half of ``kill_after`` (the graceful timeout, when
    that kills)."""
    grace = min(DRAIN_GRACE, idle)
    if kill_after:
        grace = min(grace, kill_after / 2)
    return grace
