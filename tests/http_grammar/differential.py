"""A differential fuzzer of the request framing: prefork's parsers against h11.

Valid requests (each with a second one pipelined behind it) are mutated at random -- a byte
inserted, replaced or deleted (bytes drawn from the classes that matter: controls, SP, HTAB,
CR, LF, DEL, obs-text, the separators), a line end changed, a line duplicated -- and each
mutant is judged by prefork (the head reader, the framing, Host, the body decoder: as the
WSGI handler does, in process) and by h11.  A *disagreement* is a mutant prefork accepts and
h11 either refuses or frames differently (another method, target, body, or a different place
where the first request ends).  prefork refusing what h11 accepts is fine: it is stricter on
purpose.  Used by tests/http_grammar/test_differential.py (bounded) and scripts/fuzz_http.py.
"""

from __future__ import annotations

import io
import random
import re
from collections import Counter
from dataclasses import dataclass

import h11

from prefork.apps import fasthead
from prefork.apps.body import Body, ChunkedBody, IncompleteBody, LengthBody
from prefork.apps.request import RequestError, framing, host

SECOND = b"GET /second HTTP/1.1\r\nHost: h\r\n\r\n"
SEEDS = [
    b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: h:8080\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello",
    b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=v\r\nhello\r\n3\r\nabc\r\n0\r\nX-T: t\r\n\r\n",
    b"PUT http://other.example/x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
    b"GET / HTTP/1.0\r\nUser-Agent: u\r\n\r\n",
]
INTERESTING = [*range(0x00, 0x21), 0x7F, 0x80, 0x85, 0xA0, 0xFF,
               *b'",;:=/\\@?#%+-0123456789aAfF']


@dataclass(frozen=True)
class Framed:
    """What a parser made of the first request: None fields when it refused it."""

    method: bytes
    target: bytes
    body: bytes
    rest: bytes  # the bytes after the first request


def prefork_frames(data: bytes, parser: str) -> Framed | None:
    """The first request of ``data`` as prefork's WSGI handler frames it; None if refused
    (or incomplete)."""
    rfile = io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type, unused-ignore]
    try:
        head = fasthead.choose(parser)(rfile)
        if head is None:
            return None
        kind, length = framing(head)
        host(head)
        body: Body = ChunkedBody(rfile) if kind == "chunked" else LengthBody(rfile, length)
        content = body.read()
    except (RequestError, IncompleteBody):
        return None
    return Framed(head.method.encode("latin-1"), head.target.encode("latin-1"), content,
                  rfile.read())


def h11_frames(data: bytes) -> Framed | None:
    """The first request of ``data`` as h11 frames it; None if refused (or incomplete)."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    conn.receive_data(b"")  # the client is done: an incomplete request is an error
    method = target = b""
    parts: list[bytes] = []
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Request):
                method, target = bytes(event.method), bytes(event.target)
            elif isinstance(event, h11.Data):
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return Framed(method, target, b"".join(parts), conn.trailing_data[0])
            elif event is h11.NEED_DATA or event is h11.PAUSED or isinstance(
                    event, h11.ConnectionClosed):
                return None
    except h11.RemoteProtocolError:
        return None


def mutate(rng: random.Random, data: bytes) -> bytes:
    """``data`` with one to three random mutations."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        at = rng.randrange(len(out) + 1)
        if op == 0:
            out[at:at] = bytes([rng.choice(INTERESTING)])
        elif op == 1 and at < len(out):
            out[at] = rng.choice(INTERESTING)
        elif op == 2 and at < len(out):
            del out[at]
        elif op == 3:  # a CRLF becomes a bare LF or a bare CR
            crlf = out.find(b"\r\n", at)
            if crlf >= 0:
                out[crlf:crlf + 2] = rng.choice([b"\n", b"\r", b"\n\r"])
        elif op == 4:  # a line is duplicated
            start = out.rfind(b"\n", 0, at) + 1
            end = out.find(b"\n", at) + 1
            if end > start:
                out[end:end] = out[start:end]
        else:  # a byte's case is flipped
            if at < len(out):
                out[at:at + 1] = bytes(out[at:at + 1]).swapcase()
    return bytes(out)


AGREE = ("both accept, same framing", "both refuse", "prefork refuses, h11 accepts")
# Accepted on purpose where h11 refuses: a byte above 0x7F in the target (PEP 3333's latin-1
# PATH_INFO; not framing -- the request ends at the same place either way).
# An empty line before the request line (RFC 9112 2.2: a server SHOULD ignore one).
# BWS before a chunk extension's ";" ("5 ;a=b"): RFC 9112 7.1.1's chunk-ext is
# *( BWS ";" BWS name [ BWS "=" BWS value ] ); h11 refuses it, and frames the same request without
# that BWS as prefork frames this one (checked: see without_bws).
ALLOWED = ("prefork accepts, h11 refuses: obs-text in the target (allowed)",
           "prefork accepts, h11 refuses: an empty line before the request (allowed)",
           "prefork accepts, h11 refuses: BWS before ';' in a chunk extension (allowed)")
_BWS_EXT = re.compile(rb"(\n[0-9A-Fa-f]{1,16})[ \t]+;")


def without_bws(data: bytes) -> bytes:
    """``data`` without BWS between a chunk size and its extension's ";"."""
    return _BWS_EXT.sub(rb"\1;", data)


def allowed(data: bytes, target: bytes, body: bytes) -> str | None:
    """The ALLOWED class of a request prefork accepts (its ``target`` and ``body``) and h11
    refuses, if it is one."""
    if any(byte >= 0x80 for byte in target):
        return ALLOWED[0]
    if data[:1] in (b"\r", b"\n"):
        return ALLOWED[1]
    alt = without_bws(data)
    theirs = h11_frames(alt) if alt != data else None
    if theirs is not None and (theirs.target, theirs.body) == (target, body):
        return ALLOWED[2]
    return None


def judge(data: bytes, parser: str) -> str:
    """What the two made of ``data``: one of AGREE, or a disagreement's class."""
    mine, theirs = prefork_frames(data, parser), h11_frames(data)
    if mine is None:
        return AGREE[1] if theirs is None else AGREE[2]
    if theirs is None:
        return allowed(data, mine.target, mine.body) or "prefork accepts, h11 refuses"
    for name in ("method", "target", "body", "rest"):
        if getattr(mine, name) != getattr(theirs, name):
            return f"both accept, the {name} differs"
    return AGREE[0]


def run(cases: int, seed: int, parsers: tuple[str, ...]) -> tuple[Counter[str], dict[str, bytes]]:
    """``cases`` mutants, each judged with every parser: the count of each outcome, and an
    example of each disagreement class (keyed "parser: class")."""
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    examples: dict[str, bytes] = {}
    for _ in range(cases):
        data = mutate(rng, rng.choice(SEEDS)) + SECOND
        for parser in parsers:
            key = f"{parser}: {judge(data, parser)}"
            outcomes[key] += 1
            if key.partition(": ")[2] not in AGREE + ALLOWED:
                examples.setdefault(key, data)
    return outcomes, examples
