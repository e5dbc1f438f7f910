"""Whose proxy headers count (prefork/apps/forwarded.py), without a server."""

from __future__ import annotations

import pytest

from prefork.apps.forwarded import Trusted, apply, check


def environ(**headers: str) -> dict[str, str]:
    return {"wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1", **headers}


def test_the_default_trusts_loopback_only() -> None:
    trust = Trusted("127.0.0.1,::1")
    assert trust.peer(("127.0.0.1", 5000)) and trust.peer(("::1", 5000, 0, 0))
    assert trust.peer(("::ffff:127.0.0.1", 5000, 0, 0))
    assert not trust.peer(("10.0.0.1", 5000)) and not trust.peer(("127.0.0.2", 1))
    assert trust.peer("")  # a unix socket's peer is on this host


def test_networks_and_everyone() -> None:
    assert Trusted("10.0.0.0/8").trusts("10.1.2.3")
    assert not Trusted("10.0.0.0/8").peer("")  # unix: trusted only with 127.0.0.1
    assert Trusted("*").trusts("203.0.113.5") and Trusted("*").peer("")
    with pytest.raises(ValueError):
        check("127.0.0.1,not-an-address")


def test_the_client_is_the_rightmost_untrusted_hop() -> None:
    env = environ(HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7, 127.0.0.1",
                  HTTP_X_FORWARDED_PROTO="https")
    apply(env, Trusted("127.0.0.1"))
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("203.0.113.7", "https")
    env = environ(HTTP_X_FORWARDED_FOR="203.0.113.9, 10.0.0.2")
    apply(env, Trusted("*"))  # every hop trusted: the first one
    assert env["REMOTE_ADDR"] == "203.0.113.9"


def test_nonsense_changes_nothing() -> None:
    env = environ(HTTP_X_FORWARDED_FOR="unknown", HTTP_X_FORWARDED_PROTO="gopher")
    apply(env, Trusted("127.0.0.1"))
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("127.0.0.1", "http")
