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


# -- RFC 7239 Forwarded ------------------------------------------------------------------------

def test_forwarded_sets_client_and_scheme_from_the_element_found() -> None:
    env = environ(HTTP_FORWARDED='for=6.6.6.6;proto=http, for="203.0.113.7:4711";proto=https, '
                                 'for=127.0.0.1;proto=http')
    apply(env, Trusted("127.0.0.1"))
    # From the right: 127.0.0.1 is trusted, 203.0.113.7 is not -- its element is the answer.
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("203.0.113.7", "https")


def test_forwarded_ipv6_quoted_and_case() -> None:
    env = environ(HTTP_FORWARDED='For="[2001:db8:cafe::17]:4711";PROTO=HTTPS;by=_hidden')
    apply(env, Trusted("127.0.0.1"))
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("2001:db8:cafe::17", "https")


def test_forwarded_obfuscated_or_unknown_leaves_the_peer() -> None:
    for node in ("_gazonk", "unknown", '"_x:_y"'):
        env = environ(HTTP_FORWARDED=f"for={node};proto=https")
        apply(env, Trusted("127.0.0.1"))
        assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("127.0.0.1", "https"), node


def test_forwarded_quoted_commas_and_semicolons_stay_in_their_value() -> None:
    env = environ(HTTP_FORWARDED='for=198.51.100.1;ext="a,b;c", for=10.0.0.9')
    apply(env, Trusted("127.0.0.1,10.0.0.0/8"))
    assert env["REMOTE_ADDR"] == "198.51.100.1"


def test_a_malformed_element_stops_the_walk() -> None:
    env = environ(HTTP_FORWARDED="for=198.51.100.1, for 10.0.0.9")
    apply(env, Trusted("127.0.0.1"))
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_x_forwarded_wins_over_forwarded_for_the_same_thing() -> None:
    env = environ(HTTP_X_FORWARDED_FOR="203.0.113.1", HTTP_FORWARDED="for=198.51.100.2;proto=https")
    apply(env, Trusted("127.0.0.1"))
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("203.0.113.1", "https")
