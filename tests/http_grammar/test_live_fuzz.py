"""The differential fuzzer against a real pool over sockets (live.py), bounded: per head parser,
CASES mutants, none of which the server accepts and frames otherwise than h11 (a longer run:
``scripts/fuzz_http.py --live``)."""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("h11") is None:
    pytest.skip("h11 is not installed (the test extra has it)", allow_module_level=True)

from tests.http_grammar import live
from tests.http_grammar.differential import ALLOWED, SECOND

CASES = 1000


def test_a_live_pool_frames_as_h11_does(address: tuple[str, int]) -> None:
    outcomes, examples = live.run(address, CASES, seed=3)
    assert not examples, examples
    # Both sides exercised: many mutants accepted by both, many refused.
    assert outcomes[live.AGREE[0]] > CASES // 10 and outcomes[live.AGREE[1]] > CASES // 10, (
        outcomes)


@pytest.mark.parametrize("lead", [False, True], ids=["first", "held"])
def test_a_live_pool_frames_a_lone_request_as_h11_does(address: tuple[str, int],
                                                       lead: bool) -> None:
    """Each mutant alone (all that arrived: a plain one is read by apps/plainpath.py), as a
    new connection's first request and as a held connection's next."""
    outcomes, examples = live.run(address, CASES // 2, seed=5, alone=True, lead=lead)
    assert not examples, examples
    assert outcomes[live.AGREE[0]] > CASES // 20 and outcomes[live.AGREE[1]] > CASES // 20, (
        outcomes)


def test_the_live_judge_tells_the_outcomes_apart(address: tuple[str, int]) -> None:
    assert live.judge(address, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n" + SECOND) == live.AGREE[0]
    assert live.judge(address, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n\r\n" + SECOND) == live.BETWEEN
    chunked = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert live.judge(address, chunked + b"5 \r\nhello\r\n0\r\n\r\n" + SECOND) == live.AGREE[2]
    bws = chunked + b"5 ;a=b\r\nhello\r\n0\r\n\r\n" + SECOND  # RFC 9112 7.1.1 allows it
    assert live.judge(address, bws) == ALLOWED[2]
    # A body h11 frames as 5 bytes and the server (here: the app's view) differently would be
    # "the body differs"; a server that waits after the half-close, "no answer".
    cut = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhel"
    assert live.judge(address, cut) == live.AGREE[1]  # closed at once: neither takes it
