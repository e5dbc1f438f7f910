"""The differential fuzzer (differential.py) against a real pool, over sockets: each mutant is
sent on a new connection to a prefork server serving tests/apps/grammar_echo.py (which answers
with what the application saw), the client half-closes, and what came back is compared with h11's
framing of the same bytes.  This covers what the in-process run cannot: the multiplexer's look
at the head and the body (httppeek.py, the partial-head judge), the handler's reads from a
socket, keep-alive and the pipelined request behind.

A *disagreement* is a mutant the server accepts (its first response a 200 from the app) where
h11 refuses it or frames it otherwise: another method, REQUEST_URI (the target without its
fragment), body, or the pipelined request not served as the next one exactly when h11 says it
follows (unless the first response said close: then nothing after it is read).  And a server
that neither answers nor closes within TIMEOUT seconds after the half-close is one too (it
waited for bytes that could never come).  Used by
tests/http_grammar/test_live_fuzz.py (bounded) and ``scripts/fuzz_http.py --live``.
"""

from __future__ import annotations

import json
import random
import socket
from collections import Counter
from dataclasses import dataclass

from tests.http_grammar.differential import (
    ALLOWED,
    SECOND,
    SEEDS,
    allowed,
    h11_frames,
    mutate,
)

TIMEOUT = 5.0
AGREE = ("both accept, same framing", "both refuse", "prefork refuses, h11 accepts")
# Empty lines after a request, before the next: RFC 9112 2.2 (a server SHOULD ignore at least
# one empty line received before a request line) -- prefork's parser skips up to 4; h11 leaves
# them in its trailing data.  Both end the first request at the same byte.
BETWEEN = "both accept; empty lines before the pipelined request, which prefork skips (allowed)"


@dataclass(frozen=True)
class Served:
    """What the application saw of the first request, and whether the pipelined one came
    next."""

    method: bytes
    uri: bytes
    body: bytes
    second_next: bool | None  # None: the first response said close


class NoAnswer(Exception):
    """The server neither answered nor closed within TIMEOUT."""


LEAD = b"GET /lead HTTP/1.1\r\nHost: h\r\n\r\n"


def exchange(address: tuple[str, int], data: bytes, lead: bool = False) -> bytes:
    """Send ``data`` on a new connection (``lead``: after LEAD and its whole response, so
    ``data`` comes to a connection held between requests), half-close, read until the server
    closes; what came back after LEAD's response."""
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        if lead:
            sock.sendall(LEAD)
            got = b""
            while not responses(got):
                chunk = sock.recv(65536)
                if not chunk:
                    raise NoAnswer(got)
                got += chunk
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # refused and reset before all was sent: what came back counts
            pass
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        except TimeoutError:
            raise NoAnswer(out) from None
    return out


def responses(data: bytes) -> list[tuple[int, bytes, bool]]:
    """(status, body, whether it said close) of each response in ``data`` (Content-Length
    framed, as the app's)."""
    out: list[tuple[int, bytes, bool]] = []
    while data:
        head, sep, data = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"connection":
                close = value.strip().lower() == b"close"
        out.append((status, data[:length], close))
        data = data[length:]
    return out


def _is_second(seen: dict[str, object]) -> bool:
    return (seen["method"], seen["uri"], seen["body"]) == ("GET", "/second", "")


def served(address: tuple[str, int], data: bytes, lead: bool = False) -> Served | None:
    """What the server at ``address`` made of the first request of ``data``; None if it
    refused it (or closed without an answer)."""
    got = responses(exchange(address, data, lead))
    if not got or got[0][0] != 200:
        return None
    seen = json.loads(got[0][1])
    if got[0][2]:  # the server said close (HTTP/1.0, say): nothing after it is read at all
        second: bool | None = None
    else:
        second = len(got) > 1 and got[1][0] == 200 and _is_second(json.loads(got[1][1]))
    return Served(seen["method"].encode("latin-1"), (seen["uri"] or "").encode("latin-1"),
                  seen["body"].encode("latin-1"), second)


def judge(address: tuple[str, int], data: bytes, lead: bool = False) -> str:
    """One of AGREE, an ALLOWED class, or a disagreement's class."""
    try:
        mine = served(address, data, lead)
    except NoAnswer:
        return "no answer and no close within the timeout after the half-close"
    theirs = h11_frames(data)
    if mine is None:
        return AGREE[1] if theirs is None else AGREE[2]
    if theirs is None:
        return allowed(data, mine.uri, mine.body) or "prefork accepts, h11 refuses"
    if mine.method != theirs.method:
        return "both accept, the method differs"
    if mine.uri != theirs.target.partition(b"#")[0]:
        return "both accept, the target differs"
    if mine.body != theirs.body:
        return "both accept, the body differs"
    if mine.second_next is not None and mine.second_next != (theirs.rest == SECOND):
        if mine.second_next and theirs.rest.lstrip(b"\r\n") == SECOND:
            return BETWEEN
        return "both accept, the request ends elsewhere"
    return AGREE[0]


def run(address: tuple[str, int], cases: int, seed: int, alone: bool = False,
        lead: bool = False) -> tuple[Counter[str], dict[str, bytes]]:
    """``cases`` mutants sent to ``address``: the count of each outcome, and an example of
    each disagreement class.  ``alone``: without the pipelined request behind (a head that
    is all that arrived takes the WSGI handler's plain path, apps/plainpath.py); ``lead``:
    each on a connection held after a first request."""
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    examples: dict[str, bytes] = {}
    for _ in range(cases):
        data = mutate(rng, rng.choice(SEEDS)) + (b"" if alone else SECOND)
        key = judge(address, data, lead)
        outcomes[key] += 1
        if key not in (*AGREE, *ALLOWED, BETWEEN):
            examples.setdefault(key, data)
    return outcomes, examples
