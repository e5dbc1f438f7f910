"""The user's head limits (``httplimits.py``) for ``http.server`` handlers, which parse their
own heads: :class:`~prefork.core.keepalive.KeepAliveHTTPMixIn` applies them after the stdlib's
parser has read the head, and the multiplexer's look at a head that has not ended yet
(:func:`judge`) refuses at once what the mix-in would refuse once the head is complete.

Unset (the default), none of this applies: the handler answers as under the stdlib's servers.
What applies once set: ``limit_request_line`` (the line without its CRLF; 414) in full.  The fields
(431): ``limit_request_fields`` up to 100, since ``http.client`` refuses more than 100 itself
(its own 431), and ``limit_request_field_size``, measured on the field as the stdlib keeps it,
written ``name: value`` (the blanks the client put after the colon are not known, one is
counted).  The fields are
judged once the head is complete (the stdlib's parser may refuse the request line first, a 400,
and the answer is the same either way); the request line as soon as it is too long.
"""

from __future__ import annotations

from typing import Any

from prefork.core.httplimits import HeadLimits, stdlib

_CR, _LF = 13, 10


def line_too_long(raw: bytes, limits: HeadLimits) -> bool:
    """Whether the request line ``raw`` (as read, with its line end) is longer than allowed."""
    end = len(raw)
    if raw.endswith(b"\r\n"):
        end -= 2
    elif raw.endswith(b"\n"):
        end -= 1
    return end > limits.request_line


def fields_refused(headers: Any, limits: HeadLimits) -> str | None:
    """Why the parsed ``headers`` (an ``email.message.Message``) exceed the limits, or None."""
    items = headers.raw_items() if hasattr(headers, "raw_items") else headers.items()
    count = 0
    for name, value in items:
        count += 1
        if len(name) + 2 + len(value.rstrip("\r\n")) > limits.field_size:
            return f"a header field longer than {limits.field_size} bytes"
    if count > limits.fields:
        return f"more than {limits.fields} header fields"
    return None


def judge(data: bytes, limits: HeadLimits) -> int:
    """414 if the request line at the start of the partial head ``data`` is already longer
    than allowed (whatever follows), else 0 (always, with the stdlib's own limits)."""
    if stdlib(limits):
        return 0
    newline = data.find(b"\n")
    if newline >= 0:
        return 414 if line_too_long(data[:newline + 1], limits) else 0
    # Not ended: a final CR may still be the start of its CRLF.
    size = len(data) - (1 if data[-1:] == b"\r" else 0)
    return 414 if size > limits.request_line else 0
