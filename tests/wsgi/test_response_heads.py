"""prefork/apps/response.py's checked heads, kept by value (head_of, checked_status): a head
seen before goes out as it did, and nothing the checks refuse gets through a cached one."""

from __future__ import annotations

import io
from typing import Any

import pytest

from prefork.apps import response as responses
from prefork.apps.response import Response


def sent(status: Any, headers: Any, body: bytes = b"hi", **kwargs: Any) -> bytes:
    out = io.BytesIO()
    response = Response(out, head_only=False, http11=True, reusable=kwargs.pop("keep", True))
    response.start_response(status, headers)
    response.run([body])
    return out.getvalue()


def without_date(data: bytes) -> bytes:
    return b"\r\n".join(line for line in data.split(b"\r\n") if not line.startswith(b"Date:"))


def test_a_head_sent_twice_is_the_same_bytes_and_the_same_framing() -> None:
    headers = [("Content-Type", "text/plain"), ("X-A", "1")]
    first, second = sent("200 OK", headers), sent("200 OK", list(headers))
    assert without_date(first) == without_date(second)
    assert first.startswith(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: 1\r\n")
    assert b"Content-Length: 2\r\n" in first and b"Server: prefork\r\n" in first
    assert first.endswith(b"\r\n\r\nhi")
    # The connection's own "close" is said whatever the cached head holds.
    assert b"Connection: close\r\n" in sent("200 OK", list(headers), keep=False)
    assert b"Connection: close\r\n" not in sent("200 OK", list(headers))


def test_the_applications_own_fields_win_in_a_cached_head() -> None:
    headers = [("Content-Length", "2"), ("Date", "x"), ("Server", "mine"),
               ("Connection", "close")]
    for _ in range(2):
        data = sent("200 OK", list(headers))
        assert data.count(b"Date:") == 1 and b"Server: mine\r\n" in data
        assert b"Server: prefork" not in data and data.count(b"Content-Length") == 1
        assert b"Connection: close\r\n" in data  # from the app's field, not copied as is


@pytest.mark.parametrize("bad", [
    [("Content-Type", "text/plain\r\nX-Injected: 1")],
    [("Content-Type", "text/plain"), ("Keep-Alive", "5")],
    [("Content-Length", "nope")],
    [("Content-Type", b"text/plain")],
    [["Content-Type", "text/plain"]],
    (("Content-Type", "text/plain"),),
])
def test_headers_the_checks_refuse_are_refused_after_good_ones_were_cached(bad: Any) -> None:
    sent("200 OK", [("Content-Type", "text/plain")])  # a good head cached first
    with pytest.raises((TypeError, ValueError)):
        sent("200 OK", bad)


def test_statuses_are_checked_before_and_after_caching() -> None:
    assert sent("404 Not Found", []).startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert sent("404 Not Found", []).startswith(b"HTTP/1.1 404 Not Found\r\n")
    for bad in ("OK 200", "200 OK\r\nX: 1", b"200 OK", 200):
        with pytest.raises((TypeError, ValueError)):
            sent(bad, [])


def test_the_cache_is_bounded() -> None:
    for i in range(responses.CACHED * 2 + 5):
        sent("200 OK", [("X-N", str(i))])
    assert len(responses._HEADS) <= responses.CACHED
