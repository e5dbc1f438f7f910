"""The differential fuzzer (differential.py), bounded: mutants of valid requests that prefork
accepts must be framed as h11 frames them (a longer run: scripts/fuzz_http.py)."""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("h11") is None:
    pytest.skip("h11 is not installed (the test extra has it)", allow_module_level=True)

from tests.http_grammar import differential

CASES = 3000


@pytest.mark.parametrize("seed", [1, 2])
def test_prefork_frames_as_h11_does(seed: int) -> None:
    parsers = (("python", "auto", "httptools") if importlib.util.find_spec("httptools")
               else ("python", "auto"))
    outcomes, examples = differential.run(CASES, seed, parsers)
    assert not examples, examples
    # The fuzzer must exercise both sides: many mutants accepted by both, many refused.
    agreed = sum(n for key, n in outcomes.items() if key.endswith(differential.AGREE[0]))
    refused = sum(n for key, n in outcomes.items() if key.endswith(differential.AGREE[1]))
    assert agreed > CASES // 10 and refused > CASES // 10, outcomes


def test_the_judge_tells_the_outcomes_apart() -> None:
    """The judge sees h11 refusing what prefork accepts (here the one allowed class: a byte
    above 0x7F in the target), prefork refusing what h11 accepts, and agreement."""
    data = b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n" + differential.SECOND
    assert differential.judge(data, "python") == differential.ALLOWED[0]
    assert differential.judge(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", "python") == (
        differential.AGREE[0])
    chunked = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert differential.judge(chunked + b"5 \r\nhello\r\n0\r\n\r\n", "python") == (
        differential.AGREE[2])  # h11 takes "5 " as 5
    bws = chunked + b"5 ;a=b\r\nhello\r\n0\r\n\r\n" + differential.SECOND
    assert differential.judge(bws, "python") == differential.ALLOWED[2]
    wrong = chunked + b"5 ;a=b\r\nhellox\r\n0\r\n\r\n" + differential.SECOND
    assert differential.allowed(wrong, b"/", b"hellox") is None  # h11 frames no such body
