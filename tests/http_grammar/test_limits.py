"""The user's head limits (core/httplimits.py) in both head parsers, and the multiplexer's look at
a partial head agreeing with the parser: for every prefix of a head, ``judge`` says either "not
yet" (0) or the very status the parser gives the whole head."""

from __future__ import annotations

import importlib.util
import io

import pytest

from prefork.apps import fasthead, request
from prefork.apps.request import RequestError
from prefork.command import convert
from prefork.command.convert import Invalid
from prefork.core import httplimits, httpserverlimits
from prefork.core.httplimits import HeadLimits, effective

READERS = [request.read_head, fasthead.read_head_grammar]
if importlib.util.find_spec("httptools") is not None:
    READERS.append(fasthead.read_head_httptools)


def status(reader: fasthead.HeadReader, raw: bytes, limits: HeadLimits) -> int:
    """200 if ``reader`` takes the head, else the status it refuses it with."""
    try:
        head = reader(io.BufferedReader(io.BytesIO(raw)), limits)  # type: ignore[arg-type]
    except RequestError as exc:
        return exc.status
    return 200 if head is not None else 0


def head(target: bytes = b"/", fields: int = 1, value: bytes = b"v") -> bytes:
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: h"]
    lines += [b"X-%d: %s" % (i, value) for i in range(fields - 1)]
    return b"\r\n".join(lines) + b"\r\n\r\n"


@pytest.mark.parametrize("reader", READERS, ids=lambda r: r.__name__)
def test_the_request_line_limit(reader: fasthead.HeadReader) -> None:
    limits = effective(100, 100, 8190)
    fits = b"/" + b"a" * (100 - len(b"GET / HTTP/1.1"))  # the line: exactly 100 bytes
    assert status(reader, head(fits), limits) == 200
    assert status(reader, head(fits + b"a"), limits) == 414
    assert status(reader, head(b"/" + b"a" * 9000), effective(0, 100, 8190)) == 200  # 0: none
    assert status(reader, head(b"/" + b"a" * 9000), httplimits.DEFAULT) == 414


@pytest.mark.parametrize("reader", READERS, ids=lambda r: r.__name__)
def test_the_field_limits(reader: fasthead.HeadReader) -> None:
    assert status(reader, head(fields=3), effective(8190, 3, 8190)) == 200
    assert status(reader, head(fields=4), effective(8190, 3, 8190)) == 431
    assert status(reader, head(fields=200), effective(8190, 0, 8190)) == 200  # 0: 32768
    assert status(reader, head(fields=200), httplimits.DEFAULT) == 431
    line = b"X-0: " + b"v" * 45  # 50 bytes
    assert status(reader, head(fields=2, value=b"v" * 45), effective(8190, 100, 50)) == 200
    assert status(reader, head(fields=2, value=b"v" * 46), effective(8190, 100, 50)) == 431
    assert len(line) == 50
    big = head(fields=2, value=b"v" * 20000)
    assert status(reader, big, effective(8190, 100, 0)) == 200  # 0: the head's bound only
    assert status(reader, big, httplimits.DEFAULT) == 431


def test_the_settings_take_gunicorns_ranges() -> None:
    line = convert.optional_integer_in(0, httplimits.MAX_LINE)
    assert line("0", "flag") == 0 and line(8190, "file") == 8190 and line("", "file") is None
    for bad in ("8191", "-1", "x"):
        with pytest.raises(Invalid):
            line(bad, "flag")
    assert effective(0, 0, 0) == HeadLimits(httplimits.UNLIMITED, 32768, httplimits.UNLIMITED)
    assert httplimits.of(object()) == httplimits.DEFAULT

    class Server:
        limit_request_line, limit_request_fields, limit_request_field_size = 10, 2, 30

    assert httplimits.of(Server()) == HeadLimits(10, 2, 30)

    class Unset:
        limit_request_line = limit_request_fields = limit_request_field_size = None

    assert httplimits.of(Unset()) == httplimits.DEFAULT
    assert httplimits.stdlib(httplimits.of(Unset(), httplimits.HTTP_SERVER))
    assert not httplimits.stdlib(httplimits.of(Server(), httplimits.HTTP_SERVER))


# Heads the parser refuses (and some it takes), each judged at every prefix.
SHAPES = [
    head(),
    head(b"/" + b"a" * 300),
    head(fields=9),
    head(fields=3, value=b"v" * 200),
    b"GET / HTTP/1.1\r\nHo st: x\r\nHost: h\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
    b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
    b"G\x01T / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET / HTTP/1.1\nHost: h\nX : y\n\n",
    b"\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /a\x7fb HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\x0b\r\n\r\n",
]
LIMITS = [httplimits.DEFAULT, effective(100, 4, 100), effective(0, 0, 0)]


@pytest.mark.parametrize("limits", LIMITS, ids=["default", "small", "unlimited"])
@pytest.mark.parametrize("raw", SHAPES, ids=range(len(SHAPES)))
def test_a_partial_head_is_judged_as_the_parser_judges_the_whole(
        raw: bytes, limits: HeadLimits) -> None:
    final = status(request.read_head, raw, limits)
    for end in range(1, len(raw)):
        early = request.judge(raw[:end], limits)
        assert early in (0, final), (raw[:end], early, final)
    if final != 200:  # refused at once, once the line that fails it is in (all but the end)
        cut = raw[:-2] if raw.endswith(b"\r\n\r\n") else raw[:-1]
        assert request.judge(cut, limits) == final, (raw, final)


def test_an_http_server_handlers_request_line_is_judged_as_the_mixin_judges_it() -> None:
    assert httpserverlimits.judge(b"GET /" + b"a" * 70000, effective(*httplimits.HTTP_SERVER)) == 0
    limits = effective(20, 100, 8190)
    line = b"GET /" + b"a" * 11 + b" HTTP/1.1"  # 25 bytes
    for end in range(1, len(line) + 2):
        assert httpserverlimits.judge(line[:end], limits) == (414 if end > 20 else 0)
    assert httpserverlimits.judge(b"GET /" + b"a" * 6 + b" HTTP/1.1\r", limits) == 0  # 20
    assert httpserverlimits.judge(b"GET /" + b"a" * 6 + b" HTTP/1.1\r\nX", limits) == 0
    assert httpserverlimits.line_too_long(line + b"\r\n", limits)
    assert not httpserverlimits.line_too_long(line[:20] + b"\n", limits)
