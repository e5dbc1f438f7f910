"""prefork/core/trust.py: a list of trusted peers parsed once per spelling, and each peer's
verdict kept (bounded) -- the handlers ask on every connection."""

from __future__ import annotations

import pytest

from prefork.core import trust


def test_a_list_is_parsed_once_and_still_refused_when_bad() -> None:
    assert trust.trusted("10.0.0.0/8,::1") is trust.trusted("10.0.0.0/8,::1")
    with pytest.raises(ValueError):
        trust.trusted("10.0.0.0/8,not-an-address")
    with pytest.raises(ValueError):  # (a refusal is not remembered as a list)
        trust.trusted("10.0.0.0/8,not-an-address")


def test_peers_are_judged_as_before_and_remembered_within_the_bound() -> None:
    listed = trust.Trusted("10.0.0.0/8,::1")
    assert listed.peer(("10.1.2.3", 5)) and listed.peer(("10.1.2.3", 6))
    assert not listed.peer(("192.0.2.1", 5)) and not listed.peer(("192.0.2.1", 5))
    assert listed.peer(("::1", 5, 0, 0)) and listed.peer(("::ffff:10.0.0.1", 5, 0, 0))
    assert not listed.peer(("", 0))  # a unix socket's empty address is judged as a string
    assert listed.peers == {"10.1.2.3": True, "192.0.2.1": False, "::1": True,
                            "::ffff:10.0.0.1": True, "": False}
    for i in range(trust.PEERS + 10):
        listed.peer((f"192.0.{i // 256 % 256}.{i % 256}", 1))
    assert len(listed.peers) <= trust.PEERS
    assert trust.Trusted("*").peer(("192.0.2.1", 5)) and trust.Trusted("127.0.0.1").local
